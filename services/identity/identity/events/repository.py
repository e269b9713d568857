"""The event outbox: appended in the writer's transaction, read by the internal feed.

Writers take one transaction-level advisory lock before inserting, so the
identity column hands out ``seq`` in commit order: a reader that has seen
``seq = n`` will never later find a smaller one committed (no-op on SQLite,
which serialises writers anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import OutboxEvent

# pg_advisory_xact_lock key of the outbox ("essc-id" in ASCII, truncated to int8 range).
OUTBOX_LOCK = 0x65737363_2D6964


async def lock_outbox(session: AsyncSession) -> None:
    """Serialise outbox writers until this transaction ends (PostgreSQL)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": OUTBOX_LOCK})


async def append_events(
    session: AsyncSession, events: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Append ``(type, payload)`` events to the outbox in this transaction."""
    if not events:
        return
    await lock_outbox(session)
    now = datetime.now(UTC)
    await session.execute(
        insert(OutboxEvent),
        [
            {"event_id": str(uuid.uuid4()), "type": t, "occurred_at": now, "payload": p}
            for t, p in events
        ],
    )


async def read_events(session: AsyncSession, *, after: int, limit: int) -> list[OutboxEvent]:
    """Events with ``seq > after`` in order, at most ``limit``."""
    rows = await session.scalars(
        select(OutboxEvent).where(OutboxEvent.seq > after).order_by(OutboxEvent.seq).limit(limit)
    )
    return list(rows)
