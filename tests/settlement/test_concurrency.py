"""Fifty settlements for one holder at once, from five hospitals, with retries (PostgreSQL).

Every journey quotes, settles under its own Idempotency-Key, re-quotes with a new key when
its quote went stale, and repeats requests with the same key (as a client that timed out
would) — sometimes concurrently with the original. Afterwards: each journey has exactly one
settlement and one ledger transaction, the balance never went negative, the books balance.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from devkit.peerstub import StubServer
from support.settlement_app import Api, line, make_settings, running

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

JOURNEYS = 50
OPENING_FEN = 30_000  # 300.00: enough for 30 of the 50 bills' account share


@pytest_asyncio.fixture
async def api(pg_database: str, tmp_path: Path, stub_server: StubServer) -> AsyncIterator[Api]:
    # Stale attempts are the point here: keep the repeated-failure rule from holding them.
    # Deadlines are not the point either: a crowded machine must not turn the stub's slow
    # answer into a 502 (seen at load 12-14 with the default 5 s upstream timeout).
    settings = make_settings(
        pg_database,
        tmp_path,
        stub_server,
        risk_hold_score=1_000_000,
        db_pool_size=20,
        upstream_timeout_seconds=30,
    )
    async with running(settings, stub_server.stub) as api:
        yield api


async def test_fifty_concurrent_settlements_for_one_holder(api: Api) -> None:
    holder = await api.open_holder(balance_fen=OPENING_FEN)
    hospitals = [api.hospital("310000", level) for level in (1, 2, 3, 3, 2)]
    rng = random.Random(5)
    bill = [line("C1", "C", "10.00"), line("A1", "A", "5.00")]
    stop = asyncio.Event()
    lowest = [OPENING_FEN]

    async def watch_balance() -> None:
        async with api.app.state.db.engine.connect() as conn:
            while not stop.is_set():
                value = (
                    await conn.execute(
                        text("SELECT balance_fen FROM account WHERE id = :a"),
                        {"a": f"personal:{holder}"},
                    )
                ).scalar_one()
                lowest[0] = min(lowest[0], value)
                await conn.rollback()
                await asyncio.sleep(0.002)

    async def journey(i: int) -> tuple[str, dict[str, object]]:
        h = hospitals[i % len(hospitals)]
        token = h.token(holder)
        for _ in range(JOURNEYS * 4):
            quote = await h.quote(holder, bill, token=token)
            assert quote.status_code == 201, quote.text
            key = f"j{i}-" + secrets.token_hex(4)
            quote_id = quote.json()["quote_id"]
            if rng.random() < 0.3:  # a client that timed out and sent the same request again
                first, second = await asyncio.gather(
                    h.settle(quote_id, key), h.settle(quote_id, key)
                )
                outcomes = [first, second]
            else:
                outcomes = [await h.settle(quote_id, key)]
            for resp in outcomes:
                assert resp.status_code in (201, 409), resp.text
                if resp.status_code == 409:
                    assert resp.json()["type"].rsplit("/", 1)[1] in (
                        "quote-stale", "idempotency-in-flight",
                    )  # fmt: skip
            won = [r for r in outcomes if r.status_code == 201]
            if not won:
                stale = any(r.json()["type"].endswith("/quote-stale") for r in outcomes)
                if not stale:  # only in flight: the original may still win; ask again
                    won = [await _until_answered(h, quote_id, key)]
                    if won[0].status_code != 201:
                        continue
                else:
                    await asyncio.sleep(rng.random() * 0.01)
                    continue
            body = won[0].json()
            replay = await h.settle(quote_id, key)  # the retry reusing the key
            assert replay.status_code == 201
            assert replay.json() == body
            return key, body
        raise AssertionError(f"journey {i} never settled")

    watcher = asyncio.create_task(watch_balance())
    try:
        results = await asyncio.gather(*(journey(i) for i in range(JOURNEYS)))
    finally:
        stop.set()
        await watcher
    settlement_ids = {body["settlement_id"] for _, body in results}
    assert len(settlement_ids) == JOURNEYS
    account_paid = sum(int(str(b["totals"]["account_pay"]).replace(".", "")) for _, b in results)  # type: ignore[index]
    assert account_paid == OPENING_FEN
    assert lowest[0] >= 0
    async with api.app.state.db.sessionmaker() as s:
        per_settlement = (
            await s.execute(
                text(
                    "SELECT s.id, count(t.id) FROM settlement s "
                    "LEFT JOIN ledger_tx t ON t.kind = 'settlement' AND t.ref = s.id "
                    "WHERE s.holder_ref = :h GROUP BY s.id"
                ),
                {"h": holder},
            )
        ).all()
        balance = (
            await s.execute(
                text("SELECT balance_fen FROM account WHERE id = :a"), {"a": f"personal:{holder}"}
            )
        ).scalar_one()
    assert {sid for sid, _ in per_settlement} == settlement_ids
    assert all(n == 1 for _, n in per_settlement)
    assert balance == 0
    redeemed = [t for t in api.stub.tokens.values() if t.info.holder_ref == holder]
    assert len(redeemed) == JOURNEYS
    assert all(t.redemptions == 1 for t in redeemed)
    check = await api.ledger_check()
    assert check["balanced"] is True, check
    # The same key with another body is refused, whatever the first request was.
    key, _ = results[0]
    h = hospitals[0]
    other = await h.quote(holder, bill)
    reused = await h.settle(other.json()["quote_id"], key)
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")


async def _until_answered(h: object, quote_id: str, key: str) -> object:
    for _ in range(200):
        resp = await h.settle(quote_id, key)  # type: ignore[attr-defined]
        if resp.status_code != 409 or not resp.json()["type"].endswith("/idempotency-in-flight"):
            return resp
        await asyncio.sleep(0.01)
    raise AssertionError("request stayed in flight")
