"""All SQL of quotes: the holder's state in one read, storing and fetching quotes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.calculator import HolderState
from settlement.models import Quote
from settlement.sql import AnyRow, table

QUOTE = table(Quote)

_STATE = text(
    """
    SELECT
      (SELECT balance_fen FROM account WHERE id = :account) AS balance,
      (SELECT deductible_used_fen FROM holder_year WHERE holder_ref = :holder AND year = :year)
        AS deductible_used,
      (SELECT fund_paid_fen FROM holder_year WHERE holder_ref = :holder AND year = :year)
        AS fund_paid
    """
).columns(balance=BigInteger(), deductible_used=BigInteger(), fund_paid=BigInteger())


async def holder_state(
    session: AsyncSession, *, account_id: str, holder_ref: str, year: int
) -> HolderState:
    """Balance and this year's totals (zeros for a holder not seen yet)."""
    row = (
        await session.execute(_STATE, {"account": account_id, "holder": holder_ref, "year": year})
    ).one()
    return HolderState(
        balance_fen=int(row.balance or 0),
        deductible_used_fen=int(row.deductible_used or 0),
        fund_paid_fen=int(row.fund_paid or 0),
    )


async def insert(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(QUOTE.insert().values(**values))


async def get(session: AsyncSession, quote_id: str) -> AnyRow | None:
    return (await session.execute(select(QUOTE).where(QUOTE.c.id == quote_id))).first()
