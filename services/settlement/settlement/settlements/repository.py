"""All SQL of settlements and refunds, including the conditional updates of the settle path."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from settlement import idempotent, rawsql
from settlement.ledger.repository import post_then_pg
from settlement.models import Quote, Refund, Settlement
from settlement.rawsql import Statement
from settlement.risk.repository import welford_args, welford_pg
from settlement.sql import AnyRow, insert_for, table
from shared.db import driver_connection

SETTLEMENT = table(Settlement)
REFUND = table(Refund)
QUOTE = table(Quote)


SETTLEMENT_COLUMNS = (
    "id", "quote_id", "token_sha256", "hospital_client_id", "holder_ref", "ecard_id",
    "insured_region", "treatment_region", "cross_region", "year", "total_fen", "deductible_fen",
    "fund_pay_fen", "account_pay_fen", "cash_pay_fen", "risk_score", "risk_flags", "settled_at",
)  # fmt: skip
_CLAIM = Statement(
    f"INSERT INTO settlement ({', '.join(SETTLEMENT_COLUMNS)}) "  # noqa: S608 (constants)
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(SETTLEMENT_COLUMNS) + 1))}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


async def claim(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Insert the settlement row; False if its quote or token already has one.

    The unique index entries also serialise two attempts on one quote: the second waits for
    the first's commit and then finds the conflict.
    """
    args = [values[c] for c in SETTLEMENT_COLUMNS]
    args[SETTLEMENT_COLUMNS.index("risk_flags")] = rawsql.jsontext(values["risk_flags"])
    return await rawsql.fetchrow(session, _CLAIM, *args) is not None


# PostgreSQL: the settlement row, then the holder's year and balance compared-and-set — one
# round trip, locks taken in the fixed order (settlement row, year, account): each step runs
# only if the one before succeeded. The holder's first settlement of a year creates the year
# row (``y0``, when the quote assumed zeros and the row is not there); a row another
# transaction is creating meanwhile makes ``y0`` insert nothing, and the caller falls back to
# the steps (as for any case this statement does not settle).
_CLAIM_AND_TAKE = f"""
WITH c AS (
  INSERT INTO settlement ({", ".join(SETTLEMENT_COLUMNS)})
  VALUES ({", ".join(f"${i}" for i in range(1, 19))})
  ON CONFLICT DO NOTHING RETURNING id
), y AS (
  UPDATE holder_year SET deductible_used_fen = deductible_used_fen + $12,
    fund_paid_fen = fund_paid_fen + $13
  WHERE holder_ref = $5 AND year = $10 AND deductible_used_fen = $19 AND fund_paid_fen = $20
    AND EXISTS (SELECT 1 FROM c)
  RETURNING 1
), y0 AS (
  INSERT INTO holder_year (holder_ref, year, deductible_used_fen, fund_paid_fen)
  SELECT $5, $10, $12, $13
  WHERE $19 = 0 AND $20 = 0 AND EXISTS (SELECT 1 FROM c)
    AND NOT EXISTS (SELECT 1 FROM holder_year WHERE holder_ref = $5 AND year = $10)
  ON CONFLICT DO NOTHING RETURNING 1
), a AS (
  UPDATE account SET balance_fen = balance_fen - $14
  WHERE id = $21 AND balance_fen = $22 AND balance_fen >= $14
    AND (EXISTS (SELECT 1 FROM y) OR EXISTS (SELECT 1 FROM y0))
  RETURNING 1
)
SELECT (SELECT count(*) FROM c) AS claimed,
       (SELECT count(*) FROM y) + (SELECT count(*) FROM y0) AS year_ok,
       (SELECT count(*) FROM a) AS account_ok,
       (SELECT count(*) FROM holder_year WHERE holder_ref = $5 AND year = $10) AS year_exists,
       (SELECT count(*) FROM account WHERE id = $21) AS account_exists
"""  # noqa: S608 (constants)


async def claim_and_take_pg(
    session: AsyncSession,
    values: Mapping[str, Any],
    *,
    assumed_deductible_used: int,
    assumed_fund_paid: int,
    account_id: str,
    assumed_balance: int,
) -> Mapping[str, int]:
    """:func:`claim`, :func:`add_to_year_if_unchanged` and the balance's compare-and-set in
    one statement; the counts say how far it got (and whether the year and account exist)."""
    args = [values[c] for c in SETTLEMENT_COLUMNS]
    args[SETTLEMENT_COLUMNS.index("risk_flags")] = rawsql.jsontext(values["risk_flags"])
    conn = await driver_connection(session)
    row = await rawsql.fetchrow_pg(
        conn,
        _CLAIM_AND_TAKE,
        *args,
        assumed_deductible_used,
        assumed_fund_paid,
        account_id,
        assumed_balance,
    )
    return {k: int(v) for k, v in row.items()}


# PostgreSQL: a settlement's posting and the risk statistics it feeds, one round trip; and the
# same storing the request's idempotent answer too.
_POST_AND_OBSERVE = post_then_pg(welford_pg(12))
_POST_OBSERVE_FINISH = post_then_pg(welford_pg(12), ctes=(idempotent.finish_cte(15),))


def post_and_observe_pg(
    holder_ref: str,
    hospital_client_id: str,
    amount_fen: int,
    finish: tuple[Any, ...] | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The ``then`` of :func:`settlement.ledger.service.post` that feeds the risk statistics
    (what :func:`settlement.risk.service.observe` does) with the settlement's posting, and
    stores the answer under the request's Idempotency-Key (``finish``:
    :func:`settlement.idempotent.finish_args`) if given."""
    args = welford_args(holder_ref, hospital_client_id, amount_fen)
    if finish is None:
        return _POST_AND_OBSERVE, args
    return _POST_OBSERVE_FINISH, (*args, *finish)


_YEAR_CAS = Statement(
    "UPDATE holder_year SET deductible_used_fen = deductible_used_fen + $3, "
    "fund_paid_fen = fund_paid_fen + $4 "
    "WHERE holder_ref = $1 AND year = $2 AND deductible_used_fen = $5 AND fund_paid_fen = $6 "
    "RETURNING fund_paid_fen"
)
_YEAR_CREATE = Statement(
    "INSERT INTO holder_year (holder_ref, year, deductible_used_fen, fund_paid_fen) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING year"
)


async def add_to_year_if_unchanged(
    session: AsyncSession, *, holder_ref: str, year: int, d: int, f: int, ad: int, af: int
) -> bool:
    """Add a settlement's deductible and fund to the holder's year if the totals are as assumed.

    A compare-and-set on one row: READ COMMITTED suffices because the annual cap's invariant
    lives in this row alone (a concurrent writer's update makes ours match nothing). A missing
    row counts as zeros and is created.
    """
    if await rawsql.fetchrow(session, _YEAR_CAS, holder_ref, year, d, f, ad, af) is not None:
        return True
    if ad != 0 or af != 0:
        return False
    if await rawsql.fetchrow(session, _YEAR_CREATE, holder_ref, year, d, f) is not None:
        return True
    # The row exists (made meanwhile, or holding other totals): compare against it.
    return await rawsql.fetchrow(session, _YEAR_CAS, holder_ref, year, d, f, ad, af) is not None


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
