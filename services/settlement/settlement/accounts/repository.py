"""All SQL of holders and their accounts (balances move only through the ledger repository)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.models import Holder, LedgerTx
from settlement.sql import AnyRow, insert_for, table

HOLDER = table(Holder)
TX = table(LedgerTx)


async def upsert_holder(
    session: AsyncSession,
    *,
    holder_ref: str,
    insured_region: str,
    insurance_type: str,
    birth_date: date,
    gender: str,
    now: datetime,
) -> None:
    values = {
        "holder_ref": holder_ref,
        "insured_region": insured_region,
        "insurance_type": insurance_type,
        "birth_date": birth_date,
        "gender": gender,
        "opening_applied": False,
        "created_at": now,
        "updated_at": now,
    }
    stmt = insert_for(session, HOLDER).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[HOLDER.c.holder_ref],
        set_={
            "insured_region": stmt.excluded.insured_region,
            "insurance_type": stmt.excluded.insurance_type,
            "birth_date": stmt.excluded.birth_date,
            "gender": stmt.excluded.gender,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    await session.execute(stmt)


async def mark_opening_applied(session: AsyncSession, holder_ref: str) -> bool:
    """Flip ``opening_applied`` once; True for the one caller that flipped it."""
    stmt = (
        update(HOLDER)
        .where(HOLDER.c.holder_ref == holder_ref, HOLDER.c.opening_applied.is_(False))
        .values(opening_applied=True)
        .returning(HOLDER.c.holder_ref)
    )
    return (await session.execute(stmt)).first() is not None


async def get_holder(session: AsyncSession, holder_ref: str) -> AnyRow | None:
    return (await session.execute(select(HOLDER).where(HOLDER.c.holder_ref == holder_ref))).first()


async def has_tx(session: AsyncSession, kind: str, ref: str) -> bool:
    stmt = select(TX.c.id).where(TX.c.kind == kind, TX.c.ref == ref)
    return (await session.execute(stmt)).first() is not None
