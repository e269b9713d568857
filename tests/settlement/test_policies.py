"""Policies as data: read by hospitals, versioned loads by ops (route and CLI), demo seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from settlement.policies.demo import DEMO_POLICIES
from support.settlement_app import Api


@pytest.mark.asyncio
async def test_hospital_reads_the_policy_in_force(sqlite_api: Api) -> None:
    h = sqlite_api.hospital()
    resp = await sqlite_api.client.get("/v1/policies/310000", headers=h.headers())
    assert resp.status_code == 200
    body = resp.json()
    assert body["region_code"] == "310000"
    assert body["deductible"]["inpatient"]["level_3"] == "1500.00"
    assert body["fund_ratio"]["outpatient"]["level_1"] == {
        "under_45": "0.6500", "from_45": "0.7500", "retired": "0.8500"
    }  # fmt: skip
    assert body["class_b_self_pay"] == "0.1000"
    assert body["annual_cap"] == "600000.00"
    assert body["account_may_pay"] is True
    assert body["version"] == 1


@pytest.mark.asyncio
async def test_ten_demo_cities_have_distinct_policies(sqlite_api: Api) -> None:
    h = sqlite_api.hospital()
    seen = []
    for code in DEMO_POLICIES:
        resp = await sqlite_api.client.get(f"/v1/policies/{code}", headers=h.headers())
        assert resp.status_code == 200, code
        body = resp.json()
        seen.append(json.dumps({k: body[k] for k in ("deductible", "fund_ratio", "annual_cap")}))
    assert len(DEMO_POLICIES) == 10
    assert len(set(seen)) == 10


@pytest.mark.asyncio
async def test_unknown_and_malformed_regions(sqlite_api: Api) -> None:
    h = sqlite_api.hospital()
    assert (
        await sqlite_api.client.get("/v1/policies/620100", headers=h.headers())
    ).status_code == 404
    assert (
        await sqlite_api.client.get("/v1/policies/999999", headers=h.headers())
    ).status_code == 404
    assert (await sqlite_api.client.get("/v1/policies/31", headers=h.headers())).status_code == 422
    no_scope = await sqlite_api.client.get("/v1/policies/310000", headers=h.headers("scan"))
    assert no_scope.status_code == 403


@pytest.mark.asyncio
async def test_ops_loads_a_new_version_and_a_same_load_is_a_no_op(sqlite_api: Api) -> None:
    new = {**DEMO_POLICIES["350100"], "year": 2026, "annual_cap": "360000.00"}
    first = await sqlite_api.client.put(
        "/v1/admin/policies/350100", json=new, headers=sqlite_api.ops()
    )
    assert first.status_code == 200, first.text
    assert first.json() == {"region_code": "350100", "year": 2026, "version": 2, "created": True}
    again = await sqlite_api.client.put(
        "/v1/admin/policies/350100", json=new, headers=sqlite_api.ops()
    )
    assert again.json()["created"] is False
    got = await sqlite_api.client.get(
        "/v1/policies/350100", headers=sqlite_api.hospital().headers()
    )
    assert got.json()["annual_cap"] == "360000.00"
    assert got.json()["version"] == 2
    bad = {**new, "class_b_self_pay": "1.5"}
    refused = await sqlite_api.client.put(
        "/v1/admin/policies/350100", json=bad, headers=sqlite_api.ops()
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "class_b_self_pay"
    hospital = await sqlite_api.client.put(
        "/v1/admin/policies/350100", json=new, headers=sqlite_api.hospital().headers()
    )
    assert hospital.status_code == 403


def test_cli_seed_is_idempotent_and_load_policies_validates(tmp_path: Path) -> None:
    env = {"SETTLEMENT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db", "PATH": "/usr/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "settlement", *args], env=env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip

    assert run("migrate").returncode == 0
    assert "10 loaded, 0 unchanged" in run("seed-demo").stdout
    assert "0 loaded, 10 unchanged" in run("seed-demo").stdout
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{**DEMO_POLICIES["110000"], "region_code": "110000",
                                 "year": 2027, "annual_cap": "550000.00"}]))  # fmt: skip
    out = run("load-policies", str(good))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "110000 2027: loaded as version 1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"310000": {**DEMO_POLICIES["310000"], "year": 2027,
                                          "annual_cap": 5}}))  # fmt: skip
    refused = run("load-policies", str(bad))
    assert refused.returncode == 2
    assert "annual_cap" in refused.stderr
