"""All SQL about holders and their cards (SQLAlchemy Core: imports touch many rows)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Card, CardStatusChange, Holder

H = cast(Table, Holder.__table__)
C = cast(Table, Card.__table__)


async def holders_by_id_index(
    session: AsyncSession, indexes: Sequence[bytes]
) -> dict[bytes, Row[Any]]:
    """Existing holders keyed by their ID-number blind index."""
    if not indexes:
        return {}
    rows = await session.execute(select(H).where(H.c.id_number_bidx.in_(list(indexes))))
    return {r.id_number_bidx: r for r in rows}


async def cards_by_number(session: AsyncSession, numbers: Sequence[str]) -> dict[str, Row[Any]]:
    """Existing cards keyed by card number."""
    if not numbers:
        return {}
    rows = await session.execute(select(C).where(C.c.card_number.in_(list(numbers))))
    return {r.card_number: r for r in rows}


async def active_cards_of(session: AsyncSession, holder_refs: Iterable[str]) -> dict[str, Row[Any]]:
    """The active card of each holder that has one."""
    refs = list(holder_refs)
    if not refs:
        return {}
    rows = await session.execute(select(C).where(C.c.holder_ref.in_(refs), C.c.status == "active"))
    return {r.holder_ref: r for r in rows}


async def insert_holders(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(H), rows)


async def insert_cards(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(C), rows)


async def insert_status_changes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(CardStatusChange), rows)


async def update_holder(session: AsyncSession, holder_ref: str, values: dict[str, Any]) -> None:
    await session.execute(update(H).where(H.c.holder_ref == holder_ref).values(**values))


async def get_holder(session: AsyncSession, holder_ref: str) -> Row[Any] | None:
    return (await session.execute(select(H).where(H.c.holder_ref == holder_ref))).first()


async def current_card_of(session: AsyncSession, holder_ref: str) -> Row[Any] | None:
    """The active card, else the most recently changed one."""
    rows = await session.execute(
        select(C)
        .where(C.c.holder_ref == holder_ref)
        .order_by((C.c.status == "active").desc(), C.c.updated_at.desc())
        .limit(1)
    )
    return rows.first()


async def holder_with_active_card(session: AsyncSession, id_bidx: bytes) -> Any:
    """The verification lookup: one indexed query, the same whatever the outcome."""
    stmt = (
        select(
            H.c.holder_ref,
            H.c.name_enc,
            H.c.phone_enc,
            H.c.phone_bidx,
            C.c.card_number,
        )
        .select_from(H.outerjoin(C, (C.c.holder_ref == H.c.holder_ref) & (C.c.status == "active")))
        .where(H.c.id_number_bidx == id_bidx)
    )
    return (await session.execute(stmt)).first()


def holder_values(
    holder_ref: str,
    sealed: Any,
    *,
    gender: str,
    birth_date: Any,
    region: str,
    insurance: str,
    now: datetime,
) -> dict[str, Any]:
    """The column values of a new holder row."""
    return {
        "holder_ref": holder_ref,
        "id_number_enc": sealed.id_number_enc,
        "id_number_bidx": sealed.id_number_bidx,
        "name_enc": sealed.name_enc,
        "phone_enc": sealed.phone_enc,
        "phone_bidx": sealed.phone_bidx,
        "gender": gender,
        "birth_date": birth_date,
        "insured_region": region,
        "insurance_type": insurance,
        "created_at": now,
        "updated_at": now,
    }
