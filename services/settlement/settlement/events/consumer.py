"""The background reader of identity's feed (``GET /internal/v1/events``).

At-least-once delivery, exactly-once effect: one transaction locks the cursor row (``FOR
UPDATE SKIP LOCKED``: one replica reads at a time, the others skip), fetches a page, applies
each event not seen before (deduplicated by ``event_id``) and advances the cursor — all
committed together, so a crash anywhere replays the page and the duplicates are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from pydantic import ValidationError

from settlement.accounts import service as accounts_service
from settlement.config import SettlementSettings
from settlement.events import repository
from shared.app import Runtime
from shared.wire import EventPage, HolderUpserted

logger = logging.getLogger("settlement.events")

CONSUMER = "identity"
LAG_OUTBOX = "identity_events"  # essc_outbox_lag_seconds{outbox=...}: identity's event outbox


async def poll_once(runtime: Runtime, page_size: int) -> int:
    """Read and apply one page; returns how many events the page held."""
    now = datetime.now(UTC)
    async with runtime.db.sessionmaker() as session, session.begin():
        after = await repository.lock_cursor(session, CONSUMER, now)
        if after is None:
            return 0
        page = await runtime.client("identity").call(
            "GET",
            "/internal/v1/events",
            EventPage,
            params={"after": str(after), "limit": str(page_size)},
        )
        for event in page.items:
            if not await repository.mark_processed(
                session, event.event_id, event.seq, event.type, now
            ):
                continue
            if event.type != "holder.upserted":
                continue
            try:
                payload = HolderUpserted.model_validate(event.payload)
            except ValidationError:
                logger.error("malformed holder.upserted event skipped", extra={"seq": event.seq})
                continue
            await accounts_service.apply_holder(session, payload, now)
        if page.items or page.next_after != after:
            await repository.advance(session, CONSUMER, max(page.next_after, after), now)
        return len(page.items)


async def run(runtime: Runtime, settings: SettlementSettings) -> None:
    """Poll for the life of the process: at once after a full page, after the poll period
    when events came, backing off to ``event_idle_max_seconds`` while the feed is quiet."""
    failing = False
    delay = settings.event_poll_seconds
    lag = runtime.metrics.feed_lag(LAG_OUTBOX)
    await asyncio.sleep(delay)  # let the process finish starting before the first read
    while True:
        try:
            count = await poll_once(runtime, settings.event_page_size)
            if failing:
                logger.info("event feed reachable again")
            failing = False
            if count < settings.event_page_size:  # at the end (or another replica holds it)
                lag.caught_up()
            if count >= settings.event_page_size:
                delay = 0.0
            elif count:
                delay = settings.event_poll_seconds
            else:  # nothing new: back off while the feed stays quiet
                delay = min(
                    max(delay * 2, settings.event_poll_seconds), settings.event_idle_max_seconds
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                logger.warning("reading the event feed failed: %s", type(exc).__name__)
            failing = True
            delay = min(max(delay * 2, settings.event_poll_seconds), 30.0)
        await asyncio.sleep(delay)
