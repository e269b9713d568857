"""Crash safety: the settlement process is SIGKILLed right after its commit and before it
answers; restarted, the hospital's retry with the same Idempotency-Key gets the stored answer
and the ledger holds exactly one transaction for the settlement (real process, PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devkit.cluster import Cluster
from devkit.peerstub import StubServer
from shared.tokens.claims import ClientKind
from support.pg import async_url, create_databases, drop_databases, server_url
from support.settlement_app import HOSPITAL_SCOPES, line, new_ref

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture
def solo(tmp_path: Path, run_id: str, stub_server: StubServer) -> Iterator[Cluster]:
    name = f"essc_{run_id}_crash"
    asyncio.run(create_databases([name]))
    cluster = Cluster.on_free_ports(
        tmp_path,
        {"settlement": async_url(name)},
        environment="test",
        extra_env={
            **stub_server.env(),
            "SETTLEMENT_FAULT_INJECTION": "true",
            "SETTLEMENT_EVENT_POLL_SECONDS": "0.1",
            "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.3",
        },
    )
    try:
        cluster.run_cli("settlement", "migrate")
        cluster.run_cli("settlement", "seed-demo")
        cluster.start(["settlement"])
        cluster.wait_ready(["settlement"], timeout=60)
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(drop_databases([name]))


def _count(name: str, sql: str, *args: object) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(server_url() + "/" + name)
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_killed_after_commit_the_retry_gets_the_stored_answer(
    solo: Cluster, stub_server: StubServer, run_id: str
) -> None:
    stub = stub_server.stub
    base = solo.url("settlement")
    holder = new_ref()
    stub.add_ecard(holder, "partner-1", "310000")
    stub.add_event("holder.upserted", {
        "holder_ref": holder, "insured_region": "310000", "insurance_type": "employee",
        "birth_date": "1985-03-03", "gender": "male", "opening_balance_fen": 50_000})  # fmt: skip
    partner = {"Authorization": "Bearer " + stub.gateway_token(
        "partner-1", ClientKind.PARTNER_APP, "holder:enquiry")}  # fmt: skip
    deadline = time.monotonic() + 20
    while True:  # the process consumes the feed in the background
        account = httpx.get(f"{base}/v1/ecards/ec_{holder}_partner-1/account", headers=partner)
        if account.status_code == 200 and account.json()["balance"] == "500.00":
            break
        assert time.monotonic() < deadline, account.text
        time.sleep(0.1)
    hospital = "hosp-crash"
    headers = {"Authorization": "Bearer " + stub.gateway_token(
        hospital, ClientKind.HOSPITAL, HOSPITAL_SCOPES, region_code="310000", level=2)}  # fmt: skip
    token = stub.issue_token(
        holder_ref=holder, hospital_client_id=hospital, insured_region="310000"
    )
    quote = httpx.post(
        f"{base}/v1/settlements/quotes",
        json={"settlement_token": token, "visit": {"type": "outpatient"},
              "items": [line("A1", "A", "2000.00"), line("C1", "C", "100.00")]},
        headers=headers,
    )  # fmt: skip
    assert quote.status_code == 201, quote.text
    quote_id = quote.json()["quote_id"]
    settle_headers = {**headers, "Idempotency-Key": "crash-key-1"}
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{base}/v1/settlements",
            json={"quote_id": quote_id},
            headers={**settle_headers, "X-Test-Fault": "kill-after-commit"},
            timeout=10,
        )
    proc = solo.procs["settlement"].popen
    assert proc.wait(10) == -signal.SIGKILL
    db = f"essc_{run_id}_crash"
    assert _count(db, "SELECT count(*) FROM settlement WHERE quote_id = $1", quote_id) == 1
    solo.procs.pop("settlement")
    solo.start(["settlement"])
    solo.wait_ready(["settlement"], timeout=60)
    retry = httpx.post(
        f"{base}/v1/settlements", json={"quote_id": quote_id}, headers=settle_headers
    )
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotency-replayed"] == "true"
    body = retry.json()
    assert body["quote_id"] == quote_id
    assert body["status"] == "settled"
    assert _count(
        db, "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement' AND ref = $1",
        body["settlement_id"],
    ) == 1  # fmt: skip
    assert _count(db, "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement'") == 1
    assert stub.tokens[token].redemptions == 1
    ops = {"Authorization": "Bearer " + stub.gateway_token("ops-1", ClientKind.OPS, "ops")}
    check = httpx.get(f"{base}/v1/admin/ledger/check", headers=ops).json()
    assert check["balanced"] is True, check
    after = httpx.get(f"{base}/v1/ecards/ec_{holder}_partner-1/account", headers=partner).json()
    assert body["totals"]["account_pay"] == "500.00"  # the whole balance, taken once
    assert after["balance"] == "0.00"
    assert after["fund_paid"] == body["totals"]["fund_pay"]
