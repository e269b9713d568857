"""Network faults between real parts (issue 7, part 2): what the caller sees, what is written.

The seeded cluster (four uvicorn processes on PostgreSQL) with our TCP fault proxy
(:mod:`devkit.faultproxy`) put in two places before the processes start:

- between the gateway and settlement (``GATEWAY_SETTLEMENT_URL`` → the proxy);
- between settlement and PostgreSQL (``SETTLEMENT_DATABASE_URL`` → the proxy).

Each test switches a proxy's mode while real requests run and checks the answer (status,
``application/problem+json``, a generous deadline bound where the issue asks for one) and
the rows in PostgreSQL (read directly, not through the service): no half-written
settlement, every ledger transaction balanced, one ledger transaction per settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from devkit.cluster import Cluster
from devkit.faultproxy import ThreadedFaultProxy
from support.seeded import Seeded, quote, seeded_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

DEADLINE = 2.5  # the gateway's upstream deadline in these tests (GATEWAY_UPSTREAM_TIMEOUT_SECONDS)
MARGIN = 2.0  # what "answered within the deadline" allows on a loaded two-core machine
THRESHOLD = 3  # consecutive failures that open a replica's breaker
OPEN_SECONDS = 2.0
STATEMENT_TIMEOUT = 2.0  # settlement's statement_timeout; its driver gives up a second later
COMMAND_TIMEOUT = STATEMENT_TIMEOUT + 1
ENV = {
    "SETTLEMENT_DB_STATEMENT_TIMEOUT_MS": str(int(STATEMENT_TIMEOUT * 1000)),
    "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(DEADLINE),
    "GATEWAY_BREAKER_FAILURE_THRESHOLD": str(THRESHOLD),
    "GATEWAY_BREAKER_OPEN_SECONDS": str(OPEN_SECONDS),
}
PROBLEM = "application/problem+json"


@dataclass
class Faulty:
    """The seeded cluster and the two fault proxies in front of settlement and its database."""

    seeded: Seeded
    upstream: ThreadedFaultProxy  # gateway → settlement
    database: ThreadedFaultProxy  # settlement → PostgreSQL
    http: httpx.Client

    @property
    def cluster(self) -> Cluster:
        return self.seeded.cluster

    @property
    def database_name(self) -> str:
        return urlsplit(self.cluster.db_urls["settlement"]).path.lstrip("/")

    def sql(self, query: str, *args: Any) -> Any:
        """One value from settlement's database, over a direct connection (not the proxy)."""

        async def run() -> Any:
            url = self.cluster.db_urls["settlement"].replace("postgresql+asyncpg", "postgresql")
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval(query, *args)
            finally:
                await conn.close()

        return asyncio.run(run())

    def settle(self, quote_id: str, key: str) -> httpx.Response:
        return self.http.post(
            "/v1/settlements",
            json={"quote_id": quote_id},
            headers={**self.seeded.auth("hospital"), "Idempotency-Key": key},
        )

    def new_quote(self, index: int = 0) -> str:
        return quote(
            self.http,
            self.seeded,
            self.seeded.ids["ecard_id"][index],
            self.seeded.auth("partner_app"),
        )

    def read(self) -> httpx.Response:
        """A cheap authenticated read through the gateway to settlement."""
        sid = self.seeded.ids["settlement_id"][0]
        return self.http.get(f"/v1/settlements/{sid}", headers=self.seeded.auth("hospital"))

    def breaker(self) -> int:
        """``essc_gateway_breaker_state`` of the settlement upstream (0 closed, 1 half, 2 open)."""
        text = self.http.get("/metrics").text
        found = re.search(
            r'^essc_gateway_breaker_state\{upstream="settlement"\} (\S+)$', text, re.M
        )
        assert found is not None, "no breaker gauge for settlement"
        return int(float(found.group(1)))

    def books(self) -> dict[str, int]:
        """The ledger's invariants, counted in settlement's database."""
        checks = {
            "settlements": "SELECT count(*) FROM settlement",
            "settlement_txs": "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement'",
            "unbalanced_txs": "SELECT count(*) FROM (SELECT tx_id FROM ledger_entry"
            " GROUP BY tx_id HAVING sum(amount_fen) <> 0) u",
            "txs_without_entries": "SELECT count(*) FROM ledger_tx t"
            " WHERE NOT EXISTS (SELECT 1 FROM ledger_entry e WHERE e.tx_id = t.id)",
            "settlements_without_tx": "SELECT count(*) FROM settlement s WHERE NOT EXISTS"
            " (SELECT 1 FROM ledger_tx t WHERE t.kind = 'settlement' AND t.ref = s.id)",
            "txs_without_settlement": "SELECT count(*) FROM ledger_tx t WHERE t.kind ="
            " 'settlement' AND NOT EXISTS (SELECT 1 FROM settlement s WHERE s.id = t.ref)",
            "open_claims": "SELECT count(*) FROM idempotency_record WHERE status_code IS NULL",
        }
        return {name: int(self.sql(q)) for name, q in checks.items()}

    def assert_books_whole(self) -> dict[str, int]:
        books = self.books()
        broken = {k: v for k, v in books.items() if k not in ("settlements", "settlement_txs")}
        assert broken == dict.fromkeys(broken, 0), books
        assert books["settlements"] == books["settlement_txs"], books
        check = self.http.get("/v1/admin/ledger/check", headers=self.seeded.auth("ops"))
        assert check.status_code == 200, check.text
        assert check.json()["balanced"] is True, check.json()
        return books

    def healthy(self) -> None:
        """Both proxies passing and one read answered 200 (which also closes the breaker)."""
        self.upstream.set("pass")
        self.database.set("pass")
        deadline = time.monotonic() + 30
        while True:
            resp = self.read()
            if resp.status_code == 200:
                return
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.2)


def _behind_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Faulty]:
    with contextlib.ExitStack() as stack:
        proxies: dict[str, ThreadedFaultProxy] = {}

        def put_proxies(c: Cluster) -> None:
            up = stack.enter_context(ThreadedFaultProxy("127.0.0.1", c.ports["settlement"]))
            pg = urlsplit(c.db_urls["settlement"])
            db = stack.enter_context(
                ThreadedFaultProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
            )
            proxies.update(upstream=up, database=db)
            c.extra_env["GATEWAY_SETTLEMENT_URL"] = f"http://127.0.0.1:{up.port}"
            c.extra_env["SETTLEMENT_DATABASE_URL"] = _behind_proxy(c.db_urls["settlement"], db.port)

        seeded = stack.enter_context(
            seeded_cluster(
                tmp_path_factory.mktemp("faults"),
                run_id + "f",
                extra_env=ENV,
                before_start=put_proxies,
            )
        )
        http = stack.enter_context(httpx.Client(base_url=seeded.url, timeout=30))
        yield Faulty(seeded, proxies["upstream"], proxies["database"], http)


@pytest.fixture
def net(faulty: Faulty) -> Iterator[Faulty]:
    """Each test starts and ends with both proxies passing and the breaker closed."""
    faulty.healthy()
    yield faulty
    faulty.healthy()


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = call()
    return resp, time.monotonic() - started


def _until(check: Callable[[], bool], sender: threading.Thread, what: str) -> None:
    """Poll ``check`` while the request in ``sender`` is still running."""
    deadline = time.monotonic() + 20
    while not check():
        assert sender.is_alive(), f"the request ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def _assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    return body


def test_upstream_latency_beyond_the_deadline_is_a_504_within_it(net: Faulty) -> None:
    net.upstream.set("latency", latency=DEADLINE + 5)
    resp, took = _timed(net.read)
    _assert_problem(resp, 504)
    assert took < DEADLINE + MARGIN, took


def test_slow_drip_upstream_is_a_504_within_the_deadline(net: Faulty) -> None:
    # One byte every 50 ms, both ways: the request trickles in, the answer trickles out.
    net.upstream.set("drip", drip_bytes=1, drip_interval=0.05)
    resp, took = _timed(net.read)
    _assert_problem(resp, 504)
    assert took < DEADLINE + MARGIN, took


def test_blackholed_upstream_opens_the_breaker_then_closes_when_it_returns(net: Faulty) -> None:
    assert net.breaker() == 0
    net.upstream.set("blackhole")
    # THRESHOLD requests at once: each waits out the deadline and counts one failure.
    with ThreadPoolExecutor(THRESHOLD) as pool:
        timed_out = list(pool.map(lambda _: _timed(net.read), range(THRESHOLD)))
    for resp, took in timed_out:
        _assert_problem(resp, 504)
        assert took < DEADLINE + MARGIN, took
    assert net.breaker() == 2
    fast, took = _timed(net.read)
    body = _assert_problem(fast, 503)
    assert "settlement" in body["detail"]
    assert fast.headers.get("retry-after")
    assert took < DEADLINE / 2, took  # not waiting on the dead upstream

    net.upstream.set("pass")
    deadline = time.monotonic() + OPEN_SECONDS + 10
    while net.breaker() == 2:  # open until OPEN_SECONDS passed, then one trial is let through
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert net.breaker() == 1  # half-open: the next request is the trial
    assert net.read().status_code == 200
    assert net.breaker() == 0


def test_reset_after_the_settle_reached_settlement_settles_once_on_retry(net: Faulty) -> None:
    quote_id = net.new_quote()
    key = secrets.token_hex(8)
    before = net.assert_books_whole()
    # Requests and answers held a second each way; the answer is cut off once the row exists.
    net.upstream.set("latency", latency=1.0)
    box: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: box.update(first=net.settle(quote_id, key)))
    sender.start()
    count = "SELECT count(*) FROM settlement WHERE quote_id = $1"
    _until(lambda: net.sql(count, quote_id) == 1, sender, "the settlement committed")
    net.upstream.reset_all()
    sender.join(30)
    first = box["first"]
    _assert_problem(first, 502)  # the hospital never saw the answer

    net.upstream.set("pass")
    retry = net.settle(quote_id, key)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("idempotency-replayed") == "true"
    again = net.settle(quote_id, key)
    assert again.json() == retry.json()
    sid = retry.json()["settlement_id"]
    assert net.sql("SELECT id FROM settlement WHERE quote_id = $1", quote_id) == sid
    assert net.sql(count, quote_id) == 1
    txs = "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement' AND ref = $1"
    assert net.sql(txs, sid) == 1
    after = net.assert_books_whole()
    assert after["settlements"] == before["settlements"] + 1


def _in_write_transaction(net: Faulty) -> bool:
    """Has one of settlement's backends begun writing (an xid) in an open transaction?"""
    return bool(
        net.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
            " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
            net.database_name,
        )
    )


def test_database_reset_mid_settlement_writes_nothing_and_the_retry_settles(net: Faulty) -> None:
    quote_id = net.new_quote()
    key = secrets.token_hex(8)
    before = net.assert_books_whole()
    # Every database round trip slowed, so the transaction is open long enough to cut.
    net.database.set("latency", latency=0.15)
    box: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: box.update(first=net.settle(quote_id, key)))
    sender.start()
    _until(lambda: _in_write_transaction(net), sender, "a write transaction")
    net.database.reset_all()
    sender.join(30)
    _assert_problem(box["first"], 503)
    net.database.set("pass")
    assert net.sql("SELECT count(*) FROM settlement WHERE quote_id = $1", quote_id) == 0
    assert net.sql("SELECT count(*) FROM idempotency_record WHERE key = $1", key) == 0
    assert net.assert_books_whole() == before

    retry = net.settle(quote_id, key)
    assert retry.status_code == 201, retry.text
    assert net.settle(quote_id, key).json() == retry.json()
    sid = retry.json()["settlement_id"]
    assert net.sql("SELECT count(*) FROM ledger_tx WHERE ref = $1", sid) == 1
    assert net.assert_books_whole()["settlements"] == before["settlements"] + 1


def test_postgres_terminating_backends_mid_transaction_is_a_503_and_the_pool_recovers(
    net: Faulty,
) -> None:
    ecards = net.seeded.ids["ecard_id"]
    quotes = [net.new_quote(i) for i in range(len(ecards))]  # one per holder: no stale quotes
    keys = [secrets.token_hex(8) for _ in quotes]
    before = net.assert_books_whole()
    # Round trips slowed so that every transaction is open when the backends are terminated.
    net.database.set("latency", latency=0.1)
    settled: dict[int, httpx.Response] = {}
    reads: list[httpx.Response] = []
    settlers = [
        threading.Thread(target=lambda i=i: settled.update({i: net.settle(quotes[i], keys[i])}))
        for i in range(len(quotes))
    ]
    readers = [
        threading.Thread(target=lambda: reads.extend(net.read() for _ in range(3)))
        for _ in range(2)
    ]
    for thread in settlers + readers:
        thread.start()
    _until(lambda: _in_write_transaction(net), settlers[0], "a write transaction")
    terminated = 0
    while any(t.is_alive() for t in settlers + readers):
        terminated += net.sql(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            net.database_name,
        )
        time.sleep(0.25)
    for thread in settlers + readers:
        thread.join(30)
    assert terminated > 0
    answers = [*settled.values(), *reads]
    assert len(answers) == len(quotes) + 6
    assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers]
    assert [r.status_code for r in settled.values()] == [503] * len(quotes)
    for resp in answers:
        if resp.status_code == 503:
            _assert_problem(resp, 503)

    net.database.set("pass")
    # The pool recovers at once: its dead connections are found at checkout, not by a client.
    assert [net.read().status_code for _ in range(5)] == [200] * 5
    # Nothing of the cut settlements was written: no row, no claim, the books as before.
    for quote_id, key in zip(quotes, keys, strict=True):
        assert net.sql("SELECT count(*) FROM settlement WHERE quote_id = $1", quote_id) == 0
        assert net.sql("SELECT count(*) FROM idempotency_record WHERE key = $1", key) == 0
    assert net.assert_books_whole() == before
    for quote_id, key in zip(quotes, keys, strict=True):
        retry = net.settle(quote_id, key)
        assert retry.status_code == 201, retry.text
        assert net.settle(quote_id, key).json() == retry.json()
        sid = retry.json()["settlement_id"]
        assert net.sql("SELECT count(*) FROM ledger_tx WHERE ref = $1", sid) == 1
    after = net.assert_books_whole()
    assert after["settlements"] == before["settlements"] + len(quotes)


def _settlement_answers(net: Faulty, status: int) -> float:
    """How many reads settlement itself answered with ``status`` (its own /metrics)."""
    text = httpx.get(net.cluster.url("settlement") + "/metrics", timeout=10).text
    labels = ('method="GET"', 'route="/v1/settlements/{settlement_id}"', f'status="{status}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("essc_http_requests_total{") and all(x in line for x in labels)
    )


def test_blackholed_database_ends_in_a_503_not_a_hang_and_the_pool_recovers(net: Faulty) -> None:
    answered = _settlement_answers(net, 503)
    net.database.set("blackhole")
    resp, took = _timed(net.read)
    _assert_problem(resp, 504)  # the gateway's deadline comes first
    assert took < DEADLINE + MARGIN, took
    net.database.set("pass")
    # The statement was swallowed: no answer will ever come on that connection. Settlement
    # gives up after its client-side command timeout instead of holding the request forever.
    deadline = time.monotonic() + COMMAND_TIMEOUT + 15
    while _settlement_answers(net, 503) == answered:
        assert time.monotonic() < deadline, "settlement still waits on the swallowed statement"
        time.sleep(0.2)
    assert [net.read().status_code for _ in range(5)] == [200] * 5
