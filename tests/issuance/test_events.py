"""Identity's card events in process: e-cards follow the physical card, each event once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from issuance.events import service as events
from support.issuance_env import IssuanceEnv

pytestmark = pytest.mark.asyncio


async def status(env: IssuanceEnv, ecard_id: str, client: str = "app-a") -> dict[str, Any]:
    resp = await env.client.get(f"/v1/ecards/{ecard_id}", headers=env.peers.partner(client))
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


async def outbox(env: IssuanceEnv) -> list[tuple[str, str]]:
    async with env.ctx.runtime.db.sessionmaker() as session:
        rows = await session.execute(text("SELECT ecard_id, type FROM webhook_outbox ORDER BY id"))
        return [(r[0], r[1]) for r in rows]


async def test_lost_card_suspends_every_app_and_active_resumes(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    b = await env.issue(holder, "app-b")
    env.peers.card_event(holder, "lost")
    assert await events.consume_once(env.ctx) == 1
    assert (await status(env, a["ecard_id"]))["status"] == "suspended"
    assert (await status(env, b["ecard_id"], "app-b"))["status"] == "suspended"
    env.peers.card_event(holder, "active")
    assert await events.consume_once(env.ctx) == 1
    assert (await status(env, a["ecard_id"]))["status"] == "active"
    assert await outbox(env) == [
        (a["ecard_id"], "ecard.suspended"),
        (b["ecard_id"], "ecard.suspended"),
        (a["ecard_id"], "ecard.resumed"),
        (b["ecard_id"], "ecard.resumed"),
    ]


async def test_app_and_card_suspensions_are_independent(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    headers = env.peers.partner("app-a")
    await env.client.post(f"/v1/ecards/{a['ecard_id']}/suspend", headers=headers)
    env.peers.card_event(holder, "suspended")
    await events.consume_once(env.ctx)
    # The card is active again, but the app's own suspension stays.
    env.peers.card_event(holder, "active")
    await events.consume_once(env.ctx)
    assert (await status(env, a["ecard_id"]))["status"] == "suspended"
    # And the app resuming does not undo a card suspension.
    env.peers.card_event(holder, "lost")
    await events.consume_once(env.ctx)
    resp = await env.client.post(f"/v1/ecards/{a['ecard_id']}/resume", headers=headers)
    assert resp.json()["status"] == "suspended"
    env.peers.card_event(holder, "active")
    await events.consume_once(env.ctx)
    assert (await status(env, a["ecard_id"]))["status"] == "active"


async def test_cancelled_revokes_and_replaced_reissues(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    env.peers.card_event(holder, "lost")
    env.peers.card_event(
        holder, "replaced", new_card_ref="c_new", new_card_number_masked="B2*****11"
    )
    assert await events.consume_once(env.ctx) == 2
    card = await status(env, a["ecard_id"])
    assert card["status"] == "active"
    assert card["sign_seq"] == 2
    assert card["sign_no"] != a["sign_no"]
    assert card["holder"]["pairwise_id"] == a["holder"]["pairwise_id"]
    # The old card's events no longer touch the e-card; the new card's do.
    env.peers.add_event(
        "card.status_changed",
        {
            "holder_ref": holder.holder_ref,
            "card_ref": a["ecard_id"],
            "status": "cancelled",
            "region_code": "370200",
        },
    )
    env.peers.card_event(holder, "cancelled")
    await events.consume_once(env.ctx)
    assert (await status(env, a["ecard_id"]))["status"] == "revoked"
    types = [t for _, t in await outbox(env)]
    assert types == ["ecard.suspended", "ecard.reissued", "ecard.revoked"]


async def test_duplicate_delivery_is_applied_once(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    event = env.peers.card_event(holder, "lost")
    await events.consume_once(env.ctx)
    env.peers.card_event(holder, "active")
    await events.consume_once(env.ctx)
    # The feed delivers the "lost" event again (a retry after a lost answer, a new seq).
    env.peers.add_event(event["type"], event["payload"])
    env.peers.events[-1]["event_id"] = event["event_id"]
    assert await events.consume_once(env.ctx) == 0
    assert (await status(env, a["ecard_id"]))["status"] == "active"
    # And a rewound cursor re-reads the whole feed without a second effect.
    async with env.ctx.runtime.db.sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE event_cursor SET after_seq = 0"))
    assert await events.consume_once(env.ctx) == 0
    assert [t for _, t in await outbox(env)] == ["ecard.suspended", "ecard.resumed"]


async def test_cursor_advances_with_the_effect(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    await env.issue(holder, "app-a")
    env.peers.card_event(holder, "lost")
    env.peers.add_event(
        "holder.upserted",
        {
            "holder_ref": holder.holder_ref,
            "insured_region": "310000",
            "insurance_type": "retired",
            "birth_date": "1991-01-01",
            "gender": "male",
        },
    )
    await events.consume_once(env.ctx)
    async with env.ctx.runtime.db.sessionmaker() as session:
        after = (await session.execute(text("SELECT after_seq FROM event_cursor"))).scalar_one()
        region = (await session.execute(text("SELECT insured_region FROM ecard"))).scalar_one()
    assert after == 2
    assert region == "310000"
