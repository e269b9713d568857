"""The capacity plan's arithmetic: peak rates from stated assumptions, CPU per operation from
``make bench`` results, pods per service and PostgreSQL load.

``python -m devkit.capacity bench-results/run*/latest.json`` prints the tables that
deploy/README.md quotes (each figure the median of the runs given, with the spread).
The functions are pure; the assumptions are the :class:`Peak` defaults, each stated in
deploy/README.md with its source.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Peak:
    """What the platform must carry at its busiest hour, for every card holder."""

    visits_per_year: float = 10e9
    """outpatient and emergency visits a year (8.42 billion in 2022, NHC; rounded up)"""
    working_days: float = 250
    """the year's visits all fall on working days (weekends are quieter)"""
    peak_day_factor: float = 1.3
    """Monday against the average working day"""
    peak_hour_share: float = 0.15
    """the share of a day's visits in its busiest hour (morning clinics)"""
    settlements_per_visit: float = 2.0
    """registration, then the bill for tests and drugs: each a scan of a fresh payment code"""
    identity_scans_per_visit: float = 0.5
    """scans of an identity code (check-in, records) that settle nothing"""
    ecard_share: float = 1.0
    """the share of visits that use the e-card (1.0: every holder, the design point)"""
    clients: float = 1_070_785
    """OAuth clients holding access tokens (one per medical institution, end of 2023)"""
    token_ttl_seconds: float = 600
    """access token lifetime; clients renew at 90% of it"""

    @property
    def visits_per_s(self) -> float:
        per_day = self.visits_per_year / self.working_days * self.peak_day_factor
        return per_day * self.peak_hour_share / 3600 * self.ecard_share

    @property
    def settlements_per_s(self) -> float:
        return self.visits_per_s * self.settlements_per_visit

    @property
    def identity_scans_per_s(self) -> float:
        return self.visits_per_s * self.identity_scans_per_visit

    @property
    def scans_per_s(self) -> float:
        return self.settlements_per_s + self.identity_scans_per_s

    @property
    def tokens_per_s(self) -> float:
        return self.clients / (0.9 * self.token_ttl_seconds)

    @property
    def settlements_per_year(self) -> float:
        return self.visits_per_year * self.settlements_per_visit * self.ecard_share

    def rates(self) -> dict[str, float]:
        """Operations per second at peak, keyed as :data:`OPERATIONS`."""
        return {
            "settlement journey": self.settlements_per_s,
            "payment QR code": self.settlements_per_s,
            "identity scan": self.identity_scans_per_s,
            "identity QR code": self.identity_scans_per_s,
            "access token": self.tokens_per_s,
        }


OPERATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # operation: (bench row name prefix, the processes whose CPU it costs)
    "settlement journey": (
        "hospital journey",
        (
            "gateway",
            "issuance",
            "settlement",
            "identity",
            "postgres:issuance",
            "postgres:settlement",
        ),
    ),
    "payment QR code": ("payment QR code", ("gateway", "issuance", "postgres:issuance")),
    "identity scan": ("scan (one fresh code", ("gateway", "issuance", "postgres:issuance")),
    "identity QR code": ("QR code, token only", ("gateway", "issuance", "postgres:issuance")),
    "access token": ("token issuance", ("identity",)),
}
TOKEN_GATEWAY = ("same GET through the gateway", "gateway")
"""The token request passes the gateway: its CPU per forwarded request."""


def cores_needed(
    rates: Mapping[str, float], costs_us: Mapping[tuple[str, str], float]
) -> dict[str, float]:
    """CPU cores busy per process kind: the sum over operations of rate × CPU seconds per op."""
    out: dict[str, float] = {}
    for (op, proc), us in costs_us.items():
        out[proc] = out.get(proc, 0.0) + rates.get(op, 0.0) * us / 1e6
    return out


def pods(cores: float, *, cpu_per_pod: float, target: float) -> int:
    """Pods the HPA settles on at ``cores`` of load: each pod is held at ``target`` of its
    CPU request (``cpu_per_pod``), the way a Utilization target is defined."""
    if cores <= 0:
        return 0
    return math.ceil(cores / (cpu_per_pod * target) - 1e-9)


def with_headroom(n: int, factor: float = 1.25) -> int:
    return math.ceil(n * factor - 1e-9)


def _rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = doc["rows"]
    return rows


def figure(docs: Sequence[Mapping[str, Any]], prefix: str, key: str) -> list[float]:
    """The values of ``extra[key]`` of the row whose name starts with ``prefix``, per run."""
    out = []
    for doc in docs:
        for row in _rows(doc):
            if row["name"].startswith(prefix) and key in row.get("extra", {}):
                out.append(float(row["extra"][key]))
                break
    return out


def median_costs(docs: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """(operation, process) -> the CPU µs per operation of each run."""
    costs: dict[tuple[str, str], list[float]] = {}
    for op, (prefix, procs) in OPERATIONS.items():
        for proc in procs:
            values = figure(docs, prefix, f"cpu_us:{proc}")
            if values:
                costs[(op, proc)] = values
    gw = figure(docs, TOKEN_GATEWAY[0], f"cpu_us:{TOKEN_GATEWAY[1]}")
    if gw:
        costs[("access token", "gateway")] = gw
    return costs


SERVICES = {
    # service: (CPU request per pod now in deploy/k8s/base, HPA target utilisation)
    "gateway": (0.5, 0.65),
    "issuance": (0.5, 0.70),
    "settlement": (0.5, 0.70),
    "identity": (0.25, 0.70),
}
PER_SETTLEMENT = 0.5
"""Tables that gain at least this many rows per journey grow with settlements; the others
(holder years, risk profiles of the bench's new holders) grow with holders, not here."""
RECOMMENDED_REQUEST = 1.0
"""One uvicorn process uses at most one core: request = limit = 1 CPU."""


def table_rows(docs: Sequence[Mapping[str, Any]], db: str) -> dict[str, tuple[float, float]]:
    """Per table of ``db``: (rows inserted, bytes grown) per journey, medians over the runs."""
    found: dict[str, list[tuple[float, float]]] = {}
    marker = f"db:{db}:table:"
    for doc in docs:
        for row in _rows(doc):
            if not row["name"].startswith("hospital journey"):
                continue
            for key, text in row.get("extra", {}).items():
                if key.startswith(marker):
                    words = str(text).split()
                    ins, size = float(words[words.index("ins") + 1]), float(words[-1])
                    found.setdefault(key[len(marker) :], []).append((ins, size))
    return {
        name: (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals))
        for name, vals in found.items()
    }


def _fmt(values: Sequence[float]) -> str:
    m = statistics.median(values)
    d = 0 if m >= 100 else 1
    if len(values) > 1 and max(values) != min(values):
        return f"{m:,.{d}f} ({min(values):,.{d}f}–{max(values):,.{d}f})"
    return f"{m:,.{d}f}"


def report(docs: Sequence[Mapping[str, Any]], peak: Peak) -> str:
    """The capacity plan's tables in Markdown."""
    costs = median_costs(docs)
    med = {k: statistics.median(v) for k, v in costs.items()}
    rates = peak.rates()
    cores = cores_needed(rates, med)
    lines = [
        f"visits/s {peak.visits_per_s:,.0f}; settlements/s {peak.settlements_per_s:,.0f}; "
        f"scans/s {peak.scans_per_s:,.0f}; tokens/s {peak.tokens_per_s:,.0f}",
        "",
        "| operation | peak ops/s | process | CPU µs/op (median, spread) | cores at peak |",
        "|---|---:|---|---:|---:|",
    ]
    for (op, proc), values in costs.items():
        lines.append(
            f"| {op} | {rates[op]:,.0f} | {proc} | {_fmt(values)} | "
            f"{rates[op] * med[(op, proc)] / 1e6:,.1f} |"
        )
    lines += [
        "",
        "| service | cores at peak | pods, request 1 CPU | ×1.25 | pods, request now |",
        "|---|---:|---:|---:|---:|",
    ]
    for svc, (req, target) in SERVICES.items():
        c = cores.get(svc, 0.0)
        n = pods(c, cpu_per_pod=RECOMMENDED_REQUEST, target=target)
        now = pods(c, cpu_per_pod=req, target=target)
        lines.append(f"| {svc} | {c:,.1f} | {n} | {with_headroom(n)} | {now} ({req:g} CPU) |")
    lines += [
        "",
        "| database | backend cores (all ops) | per journey: commits, row writes, WAL B, bytes | "
        "at peak: commits/s, row writes/s, WAL MB/s | TB/year |",
        "|---|---:|---|---|---:|",
    ]
    r, year = peak.settlements_per_s, peak.settlements_per_year
    for db in ("issuance", "settlement"):
        per = {
            k: figure(docs, "hospital journey", f"db:{db}:{k}")
            for k in ("commits", "row_writes", "wal_bytes", "bytes")
        }
        if not per["commits"]:
            continue
        m = {k: statistics.median(v) if v else float("nan") for k, v in per.items()}
        kept = sum(size for ins, size in table_rows(docs, db).values() if ins >= PER_SETTLEMENT)
        lines.append(
            f"| {db} | {cores.get('postgres:' + db, 0.0):,.1f} | "
            f"{_fmt(per['commits'])}, {_fmt(per['row_writes'])}, {_fmt(per['wal_bytes'])}, "
            f"{_fmt(per['bytes'])} | {m['commits'] * r:,.0f}, {m['row_writes'] * r:,.0f}, "
            f"{m['wal_bytes'] * r / 1e6:,.1f} | {kept * year / 1e12:,.1f} |"
        )
    lines += [
        "",
        "| table | rows per journey | bytes per journey | TB/year |",
        "|---|---:|---:|---:|",
    ]
    for db in ("issuance", "settlement"):
        for name, (ins, size) in sorted(table_rows(docs, db).items()):
            if ins >= PER_SETTLEMENT:
                lines.append(
                    f"| {db}.{name} | {ins:.2f} | {size:,.0f} | {size * year / 1e12:,.1f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.capacity", description=__doc__)
    parser.add_argument("results", nargs="+", help="bench-results JSON files (one per run)")
    parser.add_argument("--ecard-share", type=float, default=1.0)
    args = parser.parse_args(argv)
    docs = [json.loads(Path(p).read_text()) for p in args.results]
    print(report(docs, Peak(ecard_share=args.ecard_share)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
