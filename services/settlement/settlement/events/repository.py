"""All SQL of the event consumer: the cursor row (the one-reader lease) and deduplication."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.models import EventCursor, ProcessedEvent
from settlement.sql import insert_for, table

CURSOR = table(EventCursor)
PROCESSED = table(ProcessedEvent)


async def lock_cursor(session: AsyncSession, consumer: str, now: datetime) -> int | None:
    """The cursor, locked for this transaction; None while another replica holds it."""
    await session.execute(
        insert_for(session, CURSOR)
        .values(consumer=consumer, after_seq=0, updated_at=now)
        .on_conflict_do_nothing()
    )
    stmt = (
        select(CURSOR.c.after_seq)
        .where(CURSOR.c.consumer == consumer)
        .with_for_update(skip_locked=True)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else int(row[0])


async def advance(session: AsyncSession, consumer: str, after_seq: int, now: datetime) -> None:
    await session.execute(
        update(CURSOR)
        .where(CURSOR.c.consumer == consumer)
        .values(after_seq=after_seq, updated_at=now)
    )


async def mark_processed(
    session: AsyncSession, event_id: str, seq: int, type_: str, now: datetime
) -> bool:
    """Record an event as applied; False if it already was (a duplicate delivery)."""
    stmt = (
        insert_for(session, PROCESSED)
        .values(event_id=event_id, seq=seq, type=type_, processed_at=now)
        .on_conflict_do_nothing()
        .returning(PROCESSED.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None
