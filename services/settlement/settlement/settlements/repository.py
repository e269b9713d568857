"""All SQL of settlements and refunds, including the conditional updates of the settle path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.models import HolderYear, Quote, Refund, Settlement
from settlement.sql import AnyRow, insert_for, table

SETTLEMENT = table(Settlement)
REFUND = table(Refund)
QUOTE = table(Quote)
YEAR = table(HolderYear)


async def claim(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the settlement row; False if its quote or token already has one.

    The unique index entries also serialise two attempts on one quote: the second waits for
    the first's commit and then finds the conflict.
    """
    stmt = (
        insert_for(session, SETTLEMENT)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(SETTLEMENT.c.id)
    )
    return (await session.execute(stmt)).first() is not None


_YEAR_CAS = text(
    "UPDATE holder_year SET deductible_used_fen = deductible_used_fen + :d, "
    "fund_paid_fen = fund_paid_fen + :f "
    "WHERE holder_ref = :h AND year = :y AND deductible_used_fen = :ad AND fund_paid_fen = :af "
    "RETURNING fund_paid_fen"
)


async def add_to_year_if_unchanged(
    session: AsyncSession, *, holder_ref: str, year: int, d: int, f: int, ad: int, af: int
) -> bool:
    """Add a settlement's deductible and fund to the holder's year if the totals are as assumed.

    A compare-and-set on one row: READ COMMITTED suffices because the annual cap's invariant
    lives in this row alone (a concurrent writer's update makes ours match nothing). A missing
    row counts as zeros and is created.
    """
    params = {"h": holder_ref, "y": year, "d": d, "f": f, "ad": ad, "af": af}
    if (await session.execute(_YEAR_CAS, params)).first() is not None:
        return True
    if ad != 0 or af != 0:
        return False
    created = (
        await session.execute(
            insert_for(session, YEAR)
            .values(holder_ref=holder_ref, year=year, deductible_used_fen=d, fund_paid_fen=f)
            .on_conflict_do_nothing()
            .returning(YEAR.c.year)
        )
    ).first()
    if created is not None:
        return True
    # The row exists (made meanwhile, or holding other totals): compare against it.
    return (await session.execute(_YEAR_CAS, params)).first() is not None


_YEAR_UNWIND = text(
    "UPDATE holder_year SET deductible_used_fen = deductible_used_fen - :d, "
    "fund_paid_fen = fund_paid_fen - :f WHERE holder_ref = :h AND year = :y "
    "RETURNING fund_paid_fen"
)


async def subtract_from_year(
    session: AsyncSession, *, holder_ref: str, year: int, d: int, f: int
) -> bool:
    """Take a refunded settlement's deductible and fund back out of the holder's year."""
    params = {"h": holder_ref, "y": year, "d": d, "f": f}
    return (await session.execute(_YEAR_UNWIND, params)).first() is not None


async def get_with_refund(session: AsyncSession, settlement_id: str) -> AnyRow | None:
    """The settlement, its quote's stored answer and its refund (if any)."""
    stmt = (
        select(
            SETTLEMENT,
            QUOTE.c.body.label("quote_body"),
            REFUND.c.id.label("refund_id"),
            REFUND.c.refunded_at,
            REFUND.c.reason.label("refund_reason"),
        )
        .join(QUOTE, QUOTE.c.id == SETTLEMENT.c.quote_id)
        .outerjoin(REFUND, REFUND.c.settlement_id == SETTLEMENT.c.id)
        .where(SETTLEMENT.c.id == settlement_id)
    )
    return (await session.execute(stmt)).first()


async def claim_refund(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the refund row; False if the settlement already has one."""
    stmt = (
        insert_for(session, REFUND).values(**values).on_conflict_do_nothing().returning(REFUND.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def holder_page(
    session: AsyncSession, holder_ref: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[AnyRow]:
    """A holder's settlements newest first (keyset on settled_at, id), with refund status."""
    stmt = (
        select(SETTLEMENT, REFUND.c.id.label("refund_id"), REFUND.c.refunded_at)
        .outerjoin(REFUND, REFUND.c.settlement_id == SETTLEMENT.c.id)
        .where(SETTLEMENT.c.holder_ref == holder_ref)
        .order_by(SETTLEMENT.c.settled_at.desc(), SETTLEMENT.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        at, key = after
        stmt = stmt.where(
            (SETTLEMENT.c.settled_at < at)
            | ((SETTLEMENT.c.settled_at == at) & (SETTLEMENT.c.id < key))
        )
    return list((await session.execute(stmt)).all())
