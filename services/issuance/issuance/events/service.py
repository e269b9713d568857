"""Consuming identity's event feed: e-cards follow their physical card, exactly once.

A background loop per process polls ``GET /internal/v1/events?after=<cursor>``. Each pass
runs in one transaction that row-locks the cursor (``FOR UPDATE SKIP LOCKED``: one replica
at a time, the others skip the pass), applies each event not seen before (dedupe by
``event_id``) and advances the cursor: the effect and the cursor commit together, so a crash
re-reads the page and a redelivered event is applied once.

``card.status_changed``: lost/suspended → e-cards suspended (card cause only, an app's own
suspension is kept apart); cancelled → revoked; replaced → reissued (new sign number, same
pairwise id, new card reference); active → resumed. ``holder.upserted`` refreshes the
insured region, scheme and gender kept for scanners and settlement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.context import IssuanceContext
from issuance.ecards import lifecycle
from issuance.ecards import repository as ecard_repository
from issuance.ecards import service as ecard_service
from issuance.events import repository
from issuance.models import Ecard
from issuance.times import utcnow
from shared.wire import CardStatus, CardStatusChanged, Event, EventPage, HolderUpserted

logger = logging.getLogger("issuance.events")

FEED = "identity"
LAG_OUTBOX = "identity_events"  # essc_outbox_lag_seconds{outbox=...}: identity's event outbox
_CARD_STATE = {
    CardStatus.ACTIVE: lifecycle.CARD_ACTIVE,
    CardStatus.LOST: lifecycle.CARD_SUSPENDED,
    CardStatus.SUSPENDED: lifecycle.CARD_SUSPENDED,
    CardStatus.CANCELLED: lifecycle.CARD_REVOKED,
}


async def _reissue(
    session: AsyncSession, ecards: Sequence[Ecard], change: CardStatusChanged, now: datetime
) -> None:
    if change.new_card_ref is None:
        logger.warning("card.replaced without new_card_ref; e-cards suspended instead")
        for ecard in ecards:
            ecard.card_state = lifecycle.CARD_SUSPENDED
            lifecycle.refresh(session, ecard, now=now, reason="card_replaced")
        return
    for ecard in ecards:
        ecard.card_ref = change.new_card_ref
        ecard.sign_no = await ecard_service.new_sign_no(session, change.region_code)
        ecard.sign_seq += 1
        ecard.region_code = change.region_code
        ecard.card_state = lifecycle.CARD_ACTIVE
        # Codes of the old sign stop working; the pairwise id stays (same holder, same app).
        ecard.qr_not_before = int(now.timestamp())
        lifecycle.refresh(session, ecard, now=now, reason="card_replaced", reissued=True)


async def apply_card_status(session: AsyncSession, change: CardStatusChanged, now: datetime) -> int:
    """Make the holder's e-cards of ``change.card_ref`` follow it; returns how many."""
    ecards = await ecard_repository.linked_for_card(session, change.holder_ref, change.card_ref)
    if change.status is CardStatus.REPLACED:
        await _reissue(session, ecards, change, now)
    else:
        state = _CARD_STATE[change.status]
        for ecard in ecards:
            ecard.card_state = state
            lifecycle.refresh(session, ecard, now=now, reason=f"card_{change.status.value}")
    await session.flush()
    return len(ecards)


async def apply_holder(session: AsyncSession, change: HolderUpserted) -> None:
    for ecard in await ecard_repository.linked_for_holder(session, change.holder_ref):
        ecard.insured_region = change.insured_region
        ecard.insurance_type = change.insurance_type.value
        ecard.gender = change.gender
    await session.flush()


async def apply_event(session: AsyncSession, event: Event, now: datetime) -> bool:
    """Apply one event unless it was applied before; True if it had an effect."""
    if not await repository.mark_processed(session, event.event_id, event.seq, now):
        return False
    try:
        if event.type == "card.status_changed":
            await apply_card_status(session, CardStatusChanged.model_validate(event.payload), now)
        elif event.type == "holder.upserted":
            await apply_holder(session, HolderUpserted.model_validate(event.payload))
    except ValidationError:
        # A malformed payload can never succeed; skip it rather than block the feed.
        logger.error("skipping malformed event", extra={"event_id": event.event_id})
    return True


async def consume_once(ctx: IssuanceContext) -> int:
    """One pass over the feed; returns the number of events applied (0 if none or skipped)."""
    settings = ctx.settings
    applied = 0
    lag = ctx.runtime.metrics.feed_lag(LAG_OUTBOX)
    async with ctx.runtime.db.sessionmaker() as session, session.begin():
        after = await repository.lock_cursor(session, FEED)
        if after is None:
            lag.caught_up()  # another replica holds the feed (and reports its own lag)
            return 0
        page = await ctx.runtime.client("identity").call(
            "GET",
            "/internal/v1/events",
            EventPage,
            params={"after": str(after), "limit": str(settings.event_page_size)},
        )
        now = utcnow()
        for event in page.items:
            if await apply_event(session, event, now):
                applied += 1
        if page.next_after != after:
            await repository.advance_cursor(session, FEED, page.next_after, now)
    if len(page.items) < settings.event_page_size:
        lag.caught_up()
    if applied:
        ctx.relay_wakeup.set()
    return applied


async def consume_loop(ctx: IssuanceContext) -> None:
    """Poll the feed every ``event_poll_seconds`` (at once again after a full page).

    A failing feed (identity down or restarting) is logged once per kind of failure and
    then once a minute, not on every pass.
    """
    last_failure, last_logged = "", 0.0
    while True:
        applied = 0
        try:
            applied = await consume_once(ctx)
            last_failure = ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = type(exc).__name__ + ":" + str(getattr(exc, "status", ""))
            if failure != last_failure or time.monotonic() - last_logged > 60:
                logger.warning("event feed pass failed: %s", failure)
                last_failure, last_logged = failure, time.monotonic()
        if applied < ctx.settings.event_page_size:
            await asyncio.sleep(ctx.settings.event_poll_seconds)
