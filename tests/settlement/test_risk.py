"""Risk rules: unit cases of each rule, and holds and flags through the API (PostgreSQL)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from settlement.config import SettlementSettings
from settlement.risk.geo import distance_km, locate
from settlement.risk.rules import Context, Stats, evaluate, welford
from settlement.risk.service import thresholds
from support.settlement_app import Api, line

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TH = thresholds(SettlementSettings())


def ctx(**kw: object) -> Context:
    base: dict[str, object] = {
        "amount_fen": 10_000,
        "now": NOW,
        "treatment_region": "310000",
        "last_region": None,
        "last_at": None,
        "settled_today": 0,
        "holder": Stats(),
        "hospital": Stats(),
        "recent_failures": 0,
    }
    base.update(kw)
    return Context(**base)  # type: ignore[arg-type]


def test_geo_knows_the_demo_cities_and_falls_back_to_the_province() -> None:
    assert locate("370200") == (36.07, 120.38)
    assert locate("370211") == (36.07, 120.38)  # a Qingdao district → the city
    assert locate("620100") == locate("620000")  # Lanzhou → Gansu's capital
    beijing_shanghai = distance_km("110000", "310000")
    assert beijing_shanghai is not None
    assert 1_000 < beijing_shanghai < 1_150
    assert distance_km("999999", "310000") is None


def test_impossible_travel_fires_only_when_too_fast() -> None:
    recent = ctx(last_region="110000", last_at=NOW - timedelta(minutes=30))
    (hit,) = evaluate(recent, TH)
    assert hit.rule == "impossible_travel"
    assert hit.score == TH.travel_score
    assert "110000" in hit.reason
    assert "km/h" in hit.reason
    assert evaluate(ctx(last_region="110000", last_at=NOW - timedelta(hours=3)), TH) == []
    # Same city a minute apart is no travel at all.
    assert evaluate(ctx(last_region="310000", last_at=NOW - timedelta(minutes=1)), TH) == []


def test_daily_velocity_counts_this_settlement_too() -> None:
    assert evaluate(ctx(settled_today=TH.daily_max - 1), TH) == []
    (hit,) = evaluate(ctx(settled_today=TH.daily_max), TH)
    assert hit.rule == "daily_velocity"


def test_amount_outliers_use_the_running_statistics() -> None:
    history = [12_000.0, 15_000.0, 9_000.0, 11_000.0, 13_000.0, 10_000.0]
    stats = Stats()
    for x in history:
        stats = welford(stats, x)
    assert stats.n == 6
    assert math.isclose(stats.mean, statistics.mean(history))
    assert math.isclose(stats.stdev, statistics.stdev(history))
    assert evaluate(ctx(amount_fen=16_000, holder=stats), TH) == []
    (hit,) = evaluate(ctx(amount_fen=900_000, holder=stats), TH)
    assert hit.rule == "holder_amount"
    few = Stats(2, 10_000.0, 0.0)
    assert evaluate(ctx(amount_fen=900_000, holder=few), TH) == []  # too little history


def test_repeated_failures_score() -> None:
    (hit,) = evaluate(ctx(recent_failures=TH.failures_max), TH)
    assert hit.rule == "repeated_failures"


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_settling_in_two_cities_too_far_apart_is_held(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=0)
    beijing = pg_api.hospital("110000", 3)
    guangzhou = pg_api.hospital("440100", 3)
    await beijing.quote_and_settle(holder, [line("A1", "A", "100.00")], insured_region="310000")
    held = await guangzhou.quote(holder, [line("A1", "A", "100.00")], insured_region="310000")
    assert held.status_code == 422
    body = held.json()
    assert body["type"].endswith("/risk-review")
    assert body["risk"]["held"] is True
    assert [r["rule"] for r in body["risk"]["rules"]] == ["impossible_travel"]
    alerts = await pg_api.client.get(
        "/v1/admin/risk/alerts", params={"status": "open"}, headers=pg_api.ops()
    )
    mine = [a for a in alerts.json()["items"] if a["alert_id"] == body["alert_id"]]
    assert len(mine) == 1
    assert mine[0]["action"] == "held"
    assert mine[0]["stage"] == "quote"
    resolved = await pg_api.client.post(
        f"/v1/admin/risk/alerts/{body['alert_id']}/resolve",
        json={"resolution": "false_positive", "note": "flight"},
        headers=pg_api.ops(),
    )
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution"] == "false_positive: flight"
    again = await pg_api.client.post(
        f"/v1/admin/risk/alerts/{body['alert_id']}/resolve",
        json={"resolution": "acceptable"},
        headers=pg_api.ops(),
    )
    assert again.status_code == 409
    unknown = await pg_api.client.post(
        "/v1/admin/risk/alerts/al_nope/resolve", json={"resolution": "acceptable"},
        headers=pg_api.ops(),
    )  # fmt: skip
    assert unknown.status_code == 404
    metrics = (await pg_api.client.get("/metrics")).text
    assert 'essc_risk_alerts_total{rule="impossible_travel"}' in metrics
    hospital_view = await pg_api.client.get("/v1/admin/risk/alerts", headers=beijing.headers())
    assert hospital_view.status_code == 403


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_below_the_threshold_a_settlement_is_flagged_not_held(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=0)
    h = pg_api.hospital("310000", 3)
    for _ in range(TH.daily_max):
        await h.quote_and_settle(holder, [line("C1", "C", "1.00")])
    flagged = await h.quote_and_settle(holder, [line("C1", "C", "1.00")])
    assert flagged["risk_flags"] == ["daily_velocity"]
    alerts = (await pg_api.client.get("/v1/admin/risk/alerts", headers=pg_api.ops())).json()
    mine = [a for a in alerts["items"] if a["settlement_id"] == flagged["settlement_id"]]
    assert [(a["action"], a["stage"]) for a in mine] == [("flagged", "settlement")]
