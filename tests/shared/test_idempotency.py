"""Idempotency keys on real PostgreSQL: claim with the write, replay, reuse, in flight, rollback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db import make_engine, new_metadata
from shared.idempotency import Claim, Idempotency, StoredResponse, idempotency_table
from shared.problems import ConflictError, UnprocessableError
from support.pg import async_url, create_databases, drop_databases

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

META = new_metadata()
TABLE = idempotency_table(META)


@pytest_asyncio.fixture
async def engine(run_id: str) -> AsyncIterator[AsyncEngine]:
    name = f"essc_{run_id}_idem"
    await create_databases([name])
    eng = make_engine(async_url(name))
    async with eng.begin() as conn:
        await conn.run_sync(META.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()
        await drop_databases([name])


async def _begin(idem: Idempotency, session: object, body: bytes) -> Claim | StoredResponse:
    return await idem.begin(
        session,
        client_id="h1",
        key="k-1",
        method="POST",  # type: ignore[arg-type]
        path="/v1/settlements",
        body=body,
    )


async def test_claim_finish_replay_and_reuse(engine: AsyncEngine) -> None:
    idem = Idempotency(TABLE)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as s, s.begin():
        claim = await _begin(idem, s, b'{"quote_id": "q1"}')
        assert isinstance(claim, Claim)
        await idem.finish(s, claim, status_code=201, body={"settlement_id": "s1"})
    async with maker() as s, s.begin():
        # Same body with other key order is the same request.
        again = await _begin(idem, s, b'{ "quote_id":"q1" }')
    assert again == StoredResponse(201, {"settlement_id": "s1"})
    async with maker() as s, s.begin():
        with pytest.raises(UnprocessableError):
            await _begin(idem, s, b'{"quote_id": "q2"}')


async def test_in_flight_is_409_then_replay(engine: AsyncEngine) -> None:
    idem = Idempotency(TABLE, in_flight_wait_ms=100)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    first = maker()
    await first.begin()
    claim = await _begin(idem, first, b"{}")
    assert isinstance(claim, Claim)
    async with maker() as s, s.begin():
        with pytest.raises(ConflictError) as info:
            await _begin(idem, s, b"{}")
    assert info.value.slug == "idempotency-in-flight"
    await idem.finish(first, claim, status_code=201, body={"ok": True})
    await first.commit()
    await first.close()
    async with maker() as s, s.begin():
        assert await _begin(idem, s, b"{}") == StoredResponse(201, {"ok": True})


async def test_rolled_back_claim_leaves_nothing(engine: AsyncEngine) -> None:
    idem = Idempotency(TABLE)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as s:
        await s.begin()
        assert isinstance(await _begin(idem, s, b"{}"), Claim)
        await s.rollback()
    async with maker() as s, s.begin():
        assert isinstance(await _begin(idem, s, b"{}"), Claim)


async def test_concurrent_claims_one_wins(engine: AsyncEngine) -> None:
    idem = Idempotency(TABLE, in_flight_wait_ms=2000)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def attempt() -> str:
        async with maker() as s, s.begin():
            try:
                got = await _begin(idem, s, b'{"a": 1}')
            except ConflictError:
                return "conflict"
            if isinstance(got, Claim):
                await asyncio.sleep(0.05)
                await idem.finish(s, got, status_code=201, body={"n": 1})
                return "claimed"
            return "replayed"

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert results.count("claimed") == 1
    assert results.count("claimed") + results.count("replayed") + results.count("conflict") == 10
