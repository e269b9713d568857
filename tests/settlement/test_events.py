"""Identity's feed consumed exactly once: accounts opened with their opening balance once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from settlement.events import consumer
from support.settlement_app import Api, new_ref

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


def _payload(ref: str, region: str = "310000", balance: int | None = 20_000) -> dict[str, object]:
    return {
        "holder_ref": ref,
        "insured_region": region,
        "insurance_type": "employee",
        "birth_date": "1970-05-01",
        "gender": "male",
        "opening_balance_fen": balance,
    }


async def _openings(api: Api, ref: str) -> int:
    async with api.app.state.db.sessionmaker() as s:
        return int(
            (
                await s.execute(
                    text("SELECT count(*) FROM ledger_tx WHERE kind = 'opening' AND ref = :r"),
                    {"r": ref},
                )
            ).scalar_one()
        )


async def test_opening_balance_applies_once_whatever_is_redelivered(pg_api: Api) -> None:
    ref = new_ref()
    pg_api.stub.add_ecard(ref, "partner-1", "310000")
    pg_api.stub.add_event("holder.upserted", _payload(ref))
    await pg_api.consume()
    assert (await pg_api.balance(ref))["balance"] == "200.00"
    # The same event delivered again (at-least-once), then an update with another balance.
    original = next(e for e in pg_api.stub.events if e["payload"]["holder_ref"] == ref)
    with pg_api.stub.lock:
        pg_api.stub.events.append({**original, "seq": len(pg_api.stub.events) + 1})
    pg_api.stub.add_event("holder.upserted", _payload(ref, "370200", 99_999))
    pg_api.stub.add_event("card.status_changed", {"holder_ref": ref})
    await pg_api.consume()
    # A crash that lost the cursor replays the whole feed: deduplicated by event id.
    async with pg_api.app.state.db.sessionmaker() as s, s.begin():
        await s.execute(text("UPDATE event_cursor SET after_seq = 0"))
    await pg_api.consume()
    assert await _openings(pg_api, ref) == 1
    account = await pg_api.balance(ref)
    assert account["balance"] == "200.00"
    async with pg_api.app.state.db.sessionmaker() as s:
        region = (
            await s.execute(
                text("SELECT insured_region FROM holder WHERE holder_ref = :r"), {"r": ref}
            )
        ).scalar_one()
        cursor = (await s.execute(text("SELECT after_seq FROM event_cursor"))).scalar_one()
    assert region == "370200"
    assert cursor == len(pg_api.stub.events)
    assert (await pg_api.ledger_check())["balanced"] is True


async def test_two_replicas_polling_at_once_apply_each_event_once(pg_api: Api) -> None:
    refs = [new_ref() for _ in range(20)]
    for ref in refs:
        pg_api.stub.add_event("holder.upserted", _payload(ref, balance=1_000))
    runtime = pg_api.app.state.runtime
    results = await asyncio.gather(*(consumer.poll_once(runtime, 7) for _ in range(6)))
    assert 0 in results  # somebody found the cursor locked and skipped
    await pg_api.consume()
    counts = [await _openings(pg_api, ref) for ref in refs]
    assert counts == [1] * len(refs)


async def test_a_malformed_event_is_skipped_not_blocking(pg_api: Api) -> None:
    bad = new_ref()
    good = new_ref()
    pg_api.stub.add_event("holder.upserted", {"holder_ref": bad, "insured_region": "nope"})
    pg_api.stub.add_event("holder.upserted", _payload(good, balance=500))
    await pg_api.consume()
    assert await _openings(pg_api, good) == 1
    assert await _openings(pg_api, bad) == 0
