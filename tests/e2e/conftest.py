"""One seeded cluster with tracing on for the package: the settlement journey (demo holder 0),
the metrics scrape (holder 1) and the trace (holder 2) share it; starting and seeding a
cluster is most of an end-to-end test's time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.cluster import pg_cluster
from support.journey import ENV, seed_demo
from support.otlp import TracedCluster, otlp_receiver


@pytest.fixture(scope="package")
def observed(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[TracedCluster]:
    """Four processes exporting spans to an in-test OTLP receiver; demo data seeded.

    A holder settles at most once a day before the risk rules flag it (a cheap, real alert).
    """
    with otlp_receiver() as traces:
        env = {
            **ENV,
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s, not 5 s
            "SETTLEMENT_RISK_DAILY_MAX_SETTLEMENTS": "1",
            "SETTLEMENT_LEDGER_CHECK_SECONDS": "1",
        }
        with pg_cluster(tmp_path_factory.mktemp("observed"), run_id + "o", extra_env=env) as c:
            seed_demo(c)
            yield TracedCluster(c, traces)
