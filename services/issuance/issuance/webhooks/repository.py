"""All SQL of partner webhooks: the outbox rows, claimed by one relay at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.dbops import dialect
from issuance.models import WebhookOutbox


def add(session: AsyncSession, row: WebhookOutbox) -> None:
    session.add(row)


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[WebhookOutbox]:
    """Due, undelivered rows, locked for this transaction; other relays skip them."""
    stmt = (
        select(WebhookOutbox)
        .where(WebhookOutbox.delivered_at.is_(None), WebhookOutbox.next_attempt_at <= now)
        .order_by(WebhookOutbox.id)
        .limit(limit)
    )
    if dialect(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalars().all()


async def mark_delivered(
    session: AsyncSession, row_id: int, now: datetime, outcome: str, attempts: int
) -> None:
    await session.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.id == row_id)
        .values(delivered_at=now, outcome=outcome, attempts=attempts, last_error=None)
    )


async def mark_failed(
    session: AsyncSession, row_id: int, attempts: int, next_at: datetime, error: str
) -> None:
    await session.execute(
        update(WebhookOutbox)
        .where(WebhookOutbox.id == row_id)
        .values(attempts=attempts, next_attempt_at=next_at, last_error=error[:200])
    )


async def pending_summary(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many events are undelivered, and when the oldest of them happened (None if none)."""
    stmt = select(func.count(), func.min(WebhookOutbox.occurred_at)).where(
        WebhookOutbox.delivered_at.is_(None)
    )
    count, oldest = (await session.execute(stmt)).one()
    return int(count), oldest
