"""SIGTERM to a real uvicorn process during a slow request: readiness turns 503 at once, the
request completes with 200, the listener closes after the drain, and the process exits 0."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.cluster import Cluster, sqlite_urls

pytestmark = pytest.mark.e2e

DRAIN_SECONDS = 1.0
SLOW_SECONDS = 2.5


@pytest.fixture
def settlement(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster.on_free_ports(
        tmp_path,
        sqlite_urls(tmp_path),
        environment="test",
        extra_env={"SETTLEMENT_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS)},
    )
    cluster.start(["settlement"], graceful_timeout=10)
    try:
        cluster.wait_ready(["settlement"], timeout=30)
        yield cluster
    finally:
        cluster.stop(["settlement"])


def _in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=2).text
    match = re.search(r'^essc_http_requests_in_flight\{service="settlement"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_sigterm_drains_then_exits_zero(settlement: Cluster) -> None:
    url = settlement.url("settlement")
    proc = settlement.procs["settlement"].popen
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        resp = httpx.get(
            url + "/internal/test/sleep", params={"seconds": str(SLOW_SECONDS)}, timeout=20
        )
        outcome.update(status=resp.status_code, body=resp.json(), done_at=time.monotonic())

    client = threading.Thread(target=slow_request)
    client.start()
    deadline = time.monotonic() + 5
    while _in_flight(url) < 2:  # the slow request plus this scrape
        assert time.monotonic() < deadline, "the slow request never started"
        time.sleep(0.02)

    proc.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    readiness: list[tuple[float, int | None]] = []
    while proc.poll() is None and time.monotonic() - sent_at < 20:
        try:
            status: int | None = httpx.get(url + "/readyz", timeout=0.5).status_code
        except httpx.HTTPError:
            status = None  # the listener is closed: draining is over
        readiness.append((time.monotonic() - sent_at, status))
        time.sleep(0.05)
    code = proc.wait(timeout=20)
    exited_at = time.monotonic()
    client.join(timeout=20)

    assert outcome.get("status") == 200, (outcome, settlement.tail("settlement"))
    assert outcome.get("body") == {"slept": SLOW_SECONDS}
    done_at = outcome["done_at"]
    assert isinstance(done_at, float)
    assert sent_at < done_at <= exited_at + 0.5  # it was in flight at SIGTERM, answered before exit
    statuses = [s for _, s in readiness]
    assert 503 in statuses, readiness  # readiness failed while the process still served
    assert 200 not in statuses, readiness  # ... from the first probe after SIGTERM on
    first_503 = next(t for t, s in readiness if s == 503)
    assert first_503 < DRAIN_SECONDS, readiness
    assert code == 0, settlement.tail("settlement")
