"""SQL of the event consumer: the cursor row (one replica at a time) and the dedupe table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.dbops import dialect, insert_or_nothing
from issuance.models import EventCursor, ProcessedEvent


async def lock_cursor(session: AsyncSession, name: str) -> int | None:
    """The feed position, row-locked for this transaction; None if another replica holds it."""
    stmt = select(EventCursor.after_seq).where(EventCursor.name == name)
    if dialect(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    row = (await session.execute(stmt)).first()
    return None if row is None else int(row[0])


async def advance_cursor(session: AsyncSession, name: str, after: int, now: datetime) -> None:
    await session.execute(
        update(EventCursor).where(EventCursor.name == name).values(after_seq=after, updated_at=now)
    )


async def mark_processed(session: AsyncSession, event_id: str, seq: int, now: datetime) -> bool:
    """Remember ``event_id``; False if it was applied before (a redelivery)."""
    table = ProcessedEvent.__table__
    return await insert_or_nothing(
        session,
        table,
        {"event_id": event_id, "seq": seq, "processed_at": now},
        table.c.event_id,
    )
