"""deploy/observability: the alert rules and the Grafana dashboard read only metrics and labels
of the contract (metrics.yaml), every rule is complete, every contract metric is on the
dashboard; the HTTP part of the contract is what shared.metrics really exposes."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
REQUIRED_ALERTS = {
    "EsscHighServerErrorRatio",
    "EsscHighLatencyP99",
    "EsscUpstreamErrors",
    "EsscCircuitBreakerOpen",
    "EsscLedgerImbalance",
    "EsscOutboxLagging",
    "EsscSettlementFailuresInRegion",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DURATION = re.compile(r"^\d+[smhd]$")

Contract = dict[str, Any]


@pytest.fixture(scope="module")
def contract() -> Contract:
    doc: Contract = yaml.safe_load((OBS / "metrics.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def alerts() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((OBS / "alerts.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((OBS / "dashboard.json").read_text())
    return doc


def metric_names(expr: str, contract: Contract) -> tuple[set[str], list[str]]:
    """(contract metrics an expression reads, names it reads that the contract lacks)."""
    known = contract["metrics"]
    found: set[str] = set()
    unknown: list[str] = []
    for name in re.findall(r"\b(essc_[a-z0-9_]+)\b", expr):
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in known:
                if known[name[: -len(suffix)]]["type"] == "histogram":
                    base = name[: -len(suffix)]
        if base in known:
            found.add(base)
        else:
            unknown.append(name)
    return found, unknown


def promql_problems(expr: str, contract: Contract) -> list[str]:
    """Unknown metrics, and labels that none of the expression's metrics carries."""
    found, unknown = metric_names(expr, contract)
    problems = [f"unknown metric {name}" for name in unknown]
    if not found:
        problems.append("reads no contract metric")
    labels = set(contract["target_labels"])
    for name in found:
        labels |= set(contract["metrics"][name]["labels"])
        if contract["metrics"][name]["type"] == "histogram":
            labels.add("le")
    used: set[str] = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", selector))
    problems += [
        f"label {label!r} is on none of {sorted(found)}" for label in sorted(used - labels)
    ]
    for name in found:
        values = contract["metrics"][name].get("values", {})
        for label, allowed in values.items():
            for value in re.findall(rf'\b{label}\s*=\s*"([^"]*)"', expr):
                if value not in allowed:
                    problems.append(f"{name}: {label}={value!r} is not one of {allowed}")
    return problems


def alert_problems(doc: dict[str, Any], contract: Contract) -> list[str]:
    problems: list[str] = []
    names: list[str] = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert", "<unnamed>")
            names.append(name)
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{name}: no expr")
                continue
            if not DURATION.match(str(rule.get("for", ""))):
                problems.append(f"{name}: no `for` duration")
            if (rule.get("labels") or {}).get("severity") not in {"critical", "warning", "info"}:
                problems.append(f"{name}: no labels.severity")
            annotations = rule.get("annotations") or {}
            if not annotations.get("summary") or not annotations.get("description"):
                problems.append(f"{name}: annotations need summary and description")
            problems += [f"{name}: {p}" for p in promql_problems(rule["expr"], contract)]
    duplicates = {n for n in names if names.count(n) > 1}
    problems += [f"{n}: defined twice" for n in sorted(duplicates)]
    problems += [f"{n}: missing" for n in sorted(REQUIRED_ALERTS - set(names))]
    return problems


def dashboard_problems(doc: dict[str, Any], contract: Contract) -> list[str]:
    problems: list[str] = []
    ids = [p.get("id") for p in doc.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    covered: set[str] = set()
    boxes: list[tuple[str, int, int, int, int]] = []
    for panel in doc.get("panels", []):
        title = panel.get("title", "<untitled>")
        grid = panel.get("gridPos") or {}
        if not {"h", "w", "x", "y"} <= set(grid):
            problems.append(f"{title}: no gridPos")
            continue
        for other in boxes:
            if (
                grid["x"] < other[1] + other[3]
                and other[1] < grid["x"] + grid["w"]
                and grid["y"] < other[2] + other[4]
                and other[2] < grid["y"] + grid["h"]
            ):
                problems.append(f"{title}: overlaps {other[0]}")
        boxes.append((title, grid["x"], grid["y"], grid["w"], grid["h"]))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no query")
        for target in targets:
            expr = target.get("expr", "")
            problems += [f"{title}: {p}" for p in promql_problems(expr, contract)]
            covered |= metric_names(expr, contract)[0]
    problems += [f"{m}: on no panel" for m in sorted(set(contract["metrics"]) - covered)]
    return problems


def test_http_contract_is_what_shared_metrics_exposes(contract: Contract) -> None:
    metrics = Metrics("identity")
    metrics.observe_request("/v1/x/{id}", "GET", 200, 0.01)
    metrics.http_in_flight.labels("identity").set(0)
    exposed: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            exposed.setdefault(family.name, set()).update(k for k in sample.labels if k != "le")
    for name in ("essc_http_requests", "essc_http_request_duration_seconds"):
        assert name in exposed
    assert exposed["essc_http_requests"] == set(
        contract["metrics"]["essc_http_requests_total"]["labels"]
    )
    assert exposed["essc_http_request_duration_seconds"] == set(
        contract["metrics"]["essc_http_request_duration_seconds"]["labels"]
    )
    assert exposed["essc_http_requests_in_flight"] == set(
        contract["metrics"]["essc_http_requests_in_flight"]["labels"]
    )


def test_alert_rules_are_complete(alerts: dict[str, Any], contract: Contract) -> None:
    assert alert_problems(alerts, contract) == []
    rules = {r["alert"]: r for g in alerts["groups"] for r in g["rules"]}
    assert rules["EsscLedgerImbalance"]["labels"]["severity"] == "critical"
    assert rules["EsscLedgerImbalance"]["for"] == "0m"
    assert "region" in rules["EsscSettlementFailuresInRegion"]["expr"]


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`): syntax unchecked")
    result = subprocess.run(
        [promtool, "check", "rules", str(OBS / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_reads_only_and_all_contract_metrics(
    dashboard: dict[str, Any], contract: Contract
) -> None:
    assert dashboard_problems(dashboard, contract) == []
    assert dashboard["uid"] == "essc-platform"


def test_checkers_catch_bad_rules_and_panels(
    alerts: dict[str, Any], dashboard: dict[str, Any], contract: Contract
) -> None:
    bad_alerts = copy.deepcopy(alerts)
    first = bad_alerts["groups"][0]["rules"][0]
    del first["labels"]["severity"]
    first["expr"] = first["expr"].replace("essc_http_requests_total", "essc_http_request_total")
    bad_alerts["groups"][-1]["rules"].pop()
    problems = alert_problems(bad_alerts, contract)
    assert f"{first['alert']}: no labels.severity" in problems
    assert f"{first['alert']}: unknown metric essc_http_request_total" in problems
    assert promql_problems("sum by (hospital) (rate(essc_settlements_total[5m]))", contract) == [
        "label 'hospital' is on none of ['essc_settlements_total']"
    ]
    bad_dash = copy.deepcopy(dashboard)
    bad_dash["panels"] = [p for p in bad_dash["panels"] if "ledger" not in p["title"].lower()]
    bad_dash["panels"][1]["targets"][0]["expr"] = "rate(essc_nonexistent_total[5m])"
    problems = dashboard_problems(bad_dash, contract)
    assert "essc_ledger_imbalance: on no panel" in problems
    assert any("unknown metric essc_nonexistent_total" in p for p in problems)
