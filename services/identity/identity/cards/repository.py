"""All SQL about one card's status."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Card, CardStatusChange

C = cast(Table, Card.__table__)


async def card_for_update(session: AsyncSession, card_number: str) -> Row[Any] | None:
    """The card, row-locked until the transaction ends (PostgreSQL)."""
    stmt = select(C).where(C.c.card_number == card_number).with_for_update()
    return (await session.execute(stmt)).first()


async def card_number_exists(session: AsyncSession, card_number: str) -> bool:
    return (
        await session.execute(select(C.c.card_ref).where(C.c.card_number == card_number))
    ).first() is not None


async def other_active_card(session: AsyncSession, holder_ref: str, card_ref: str) -> bool:
    stmt = select(C.c.card_ref).where(
        C.c.holder_ref == holder_ref, C.c.status == "active", C.c.card_ref != card_ref
    )
    return (await session.execute(stmt)).first() is not None


async def set_status(session: AsyncSession, card_ref: str, status: str, ts: datetime) -> None:
    await session.execute(
        update(C).where(C.c.card_ref == card_ref).values(status=status, updated_at=ts)
    )


async def insert_card(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(C).values(**values))


async def add_history(
    session: AsyncSession, card_ref: str, before: str | None, after: str, actor: str, ts: datetime
) -> None:
    await session.execute(
        insert(CardStatusChange).values(
            card_ref=card_ref, from_status=before, to_status=after, actor=actor, changed_at=ts
        )
    )
