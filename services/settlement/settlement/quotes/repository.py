"""All SQL of quotes: the holder's state in one read, storing and fetching quotes (hot path:
raw statements, see :mod:`settlement.rawsql`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from settlement import rawsql
from settlement.calculator import HolderState
from settlement.rawsql import Statement

_STATE = Statement(
    "SELECT (SELECT balance_fen FROM account WHERE id = $1) AS balance, "
    "(SELECT deductible_used_fen FROM holder_year WHERE holder_ref = $2 AND year = $3) "
    "AS deductible_used, "
    "(SELECT fund_paid_fen FROM holder_year WHERE holder_ref = $2 AND year = $3) AS fund_paid"
)

COLUMNS = (
    "id", "hospital_client_id", "hospital_level", "treatment_region", "settlement_token",
    "token_sha256", "ecard_id", "partner_client_id", "holder_ref", "insured_region", "policy_id",
    "year", "visit_type", "cross_region", "total_fen", "deductible_fen", "fund_pay_fen",
    "account_pay_fen", "cash_pay_fen", "assumed_balance_fen", "assumed_deductible_used_fen",
    "assumed_fund_paid_fen", "body", "created_at", "expires_at",
)  # fmt: skip
_INSERT = Statement(
    f"INSERT INTO quote ({', '.join(COLUMNS)}) "  # noqa: S608 (column names are constants)
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
)
_GET = Statement(f"SELECT {', '.join(COLUMNS)} FROM quote WHERE id = $1")  # noqa: S608


async def holder_state(
    session: AsyncSession, *, account_id: str, holder_ref: str, year: int
) -> HolderState:
    """Balance and this year's totals (zeros for a holder not seen yet)."""
    row = await rawsql.fetchrow(session, _STATE, account_id, holder_ref, year)
    assert row is not None
    return HolderState(
        balance_fen=int(row["balance"] or 0),
        deductible_used_fen=int(row["deductible_used"] or 0),
        fund_paid_fen=int(row["fund_paid"] or 0),
    )


async def insert(session: AsyncSession, values: Mapping[str, Any]) -> None:
    args = [values[c] for c in COLUMNS]
    args[COLUMNS.index("body")] = rawsql.jsontext(values["body"])
    await rawsql.execute(session, _INSERT, *args)


async def get(session: AsyncSession, quote_id: str) -> dict[str, Any] | None:
    """The quote as a dict (timestamps aware, ``body`` parsed), or None."""
    row = await rawsql.fetchrow(session, _GET, quote_id)
    if row is None:
        return None
    quote = dict(row)
    quote["body"] = rawsql.jsonvalue(quote["body"])
    quote["cross_region"] = bool(quote["cross_region"])
    quote["created_at"] = rawsql.utc(quote["created_at"])
    quote["expires_at"] = rawsql.utc(quote["expires_at"])
    return quote
