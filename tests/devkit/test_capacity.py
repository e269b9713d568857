"""The capacity plan's arithmetic (devkit.capacity): pure functions, no processes."""

from __future__ import annotations

import pytest

from devkit.capacity import Peak, cores_needed, figure, median_costs, pods, report, with_headroom


def _doc(journey_settlement_us: float) -> dict[str, object]:
    return {
        "rows": [
            {"name": "hospital journey: scan + quote + settle", "extra": {
                "cpu_us:settlement": journey_settlement_us, "cpu_us:gateway": 1500.0,
                "db:settlement:commits": 2.0, "db:settlement:row_writes": 11.0,
                "db:settlement:wal_bytes": 5000.0, "db:settlement:bytes": 5400.0,
                "db:settlement:table:ledger_entry": "ins 3.00 upd 0.00 del 0.00 bytes 900"}},
            {"name": "token issuance", "extra": {"cpu_us:identity": 3000.0}},
        ]
    }  # fmt: skip


def test_peak_rates_follow_the_stated_formula() -> None:
    peak = Peak(visits_per_year=10e9, working_days=250, peak_day_factor=1.3, peak_hour_share=0.15)
    visits = 10e9 / 250 * 1.3 * 0.15 / 3600
    assert peak.visits_per_s == pytest.approx(visits)
    assert peak.settlements_per_s == pytest.approx(2 * visits)
    assert peak.scans_per_s == pytest.approx(2.5 * visits)
    assert Peak(ecard_share=0.25).settlements_per_s == pytest.approx(peak.settlements_per_s / 4)
    assert Peak(clients=540, token_ttl_seconds=100).tokens_per_s == pytest.approx(6.0)


def test_cores_sum_rate_times_cost_per_process() -> None:
    rates = {"a": 1000.0, "b": 10.0}
    costs = {("a", "gw"): 500.0, ("b", "gw"): 1000.0, ("b", "svc"): 2_000_000.0}
    assert cores_needed(rates, costs) == pytest.approx({"gw": 0.51, "svc": 20.0})


def test_pods_hold_each_pod_at_the_target_of_its_request() -> None:
    assert pods(7.0, cpu_per_pod=1.0, target=0.7) == 10
    assert pods(7.01, cpu_per_pod=1.0, target=0.7) == 11
    assert pods(7.0, cpu_per_pod=0.5, target=0.7) == 20
    assert pods(0.0, cpu_per_pod=1.0, target=0.7) == 0
    assert with_headroom(10) == 13


def test_figures_are_read_per_run_and_reported_as_median() -> None:
    docs = [_doc(4000.0), _doc(5000.0), _doc(4200.0)]
    assert figure(docs, "hospital journey", "cpu_us:settlement") == [4000.0, 5000.0, 4200.0]
    costs = median_costs(docs)
    assert costs[("settlement journey", "settlement")] == [4000.0, 5000.0, 4200.0]
    assert ("settlement journey", "issuance") not in costs  # absent from the runs
    text = report(docs, Peak())
    settlements = Peak().settlements_per_s
    assert f"| settlement journey | {settlements:,.0f} | settlement | 4,200 (4,000–5,000) |" in text
    assert f", {settlements * 11:,.0f}, " in text  # row writes per second
    year = Peak().settlements_per_year
    assert f"| settlement.ledger_entry | 3.00 | 900 | {900 * year / 1e12:,.1f} |" in text
