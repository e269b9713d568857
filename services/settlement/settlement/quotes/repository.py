"""All SQL of quotes: the holder's state in one read, storing and fetching quotes (hot path:
raw statements, see :mod:`settlement.rawsql`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from settlement import rawsql
from settlement.calculator import HolderState
from settlement.rawsql import Statement
from settlement.risk import repository as risk_repository

_STATE_SQL = (
    "SELECT (SELECT balance_fen FROM account WHERE id = $1) AS balance, "
    "(SELECT deductible_used_fen FROM holder_year WHERE holder_ref = $2 AND year = $3) "
    "AS deductible_used, "
    "(SELECT fund_paid_fen FROM holder_year WHERE holder_ref = $2 AND year = $3) AS fund_paid"
)
_STATE = Statement(_STATE_SQL)
# What a quote reads, in one round trip: the holder's state and the risk rules' context.
_STATE_AND_RISK = Statement(
    _STATE_SQL
    + ", "
    + risk_repository.context_columns(
        holder="$2::text", hospital="$4::text", day_start="$5", since="$6"
    )
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
# What a settlement reads first: the quote and the risk rules' context, in one round trip.
# The body as text, parsed with orjson (the JSON codec the SQLAlchemy dialect registers on its
# connections parses with the standard library's json: measurably slower).
_QUOTE_COLUMNS = ", ".join("q.body::text AS body" if c == "body" else "q." + c for c in COLUMNS)
_GET_WITH_RISK = Statement(
    f"SELECT {_QUOTE_COLUMNS}, "  # noqa: S608 (constants)
    + risk_repository.context_columns(
        holder="q.holder_ref", hospital="q.hospital_client_id", day_start="$2", since="$3"
    )
    + " FROM quote q WHERE q.id = $1"
)


def get_with_risk_read(
    quote_id: str, *, day_start: datetime, failures_since: datetime, first: int
) -> tuple[str, tuple[Any, ...]]:
    """:func:`get_with_risk` as a read for another statement (PostgreSQL; parameters from
    ``$first``): its SQL and arguments. Its row goes to :func:`quote_from_read`."""
    return _get_with_risk_pg(first), (quote_id, day_start, failures_since)


@lru_cache(maxsize=4)
def _get_with_risk_pg(first: int) -> str:
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + first - 1}", _GET_WITH_RISK.pg)


_CLAIM_COLUMNS = ("got", "claimed", "fingerprint", "status_code", "response_body")


def quote_from_read(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The quote of a row read through :func:`get_with_risk_read` (None if there was none)."""
    if row["id"] is None:
        return None
    quote = dict(row)
    for column in _CLAIM_COLUMNS:  # the other statement's own columns
        quote.pop(column, None)
    return _quote(quote)


async def holder_state(
    session: AsyncSession, *, account_id: str, holder_ref: str, year: int
) -> HolderState:
    """Balance and this year's totals (zeros for a holder not seen yet)."""
    row = await rawsql.fetchrow(session, _STATE, account_id, holder_ref, year)
    assert row is not None
    return _state(row)


def _state(row: Mapping[str, Any]) -> HolderState:
    return HolderState(
        balance_fen=int(row["balance"] or 0),
        deductible_used_fen=int(row["deductible_used"] or 0),
        fund_paid_fen=int(row["fund_paid"] or 0),
    )


async def state_and_risk(
    session: AsyncSession,
    *,
    account_id: str,
    holder_ref: str,
    year: int,
    hospital_client_id: str,
    day_start: datetime,
    failures_since: datetime,
) -> tuple[HolderState, Mapping[str, Any]]:
    """The holder's state and the risk context row (one statement)."""
    row = await rawsql.fetchrow(
        session,
        _STATE_AND_RISK,
        account_id,
        holder_ref,
        year,
        hospital_client_id,
        day_start,
        failures_since,
    )
    assert row is not None
    return _state(row), row


async def insert(session: AsyncSession, values: Mapping[str, Any]) -> None:
    args = [values[c] for c in COLUMNS]
    args[COLUMNS.index("body")] = rawsql.jsontext(values["body"])
    await rawsql.execute(session, _INSERT, *args)


async def get_with_risk(
    session: AsyncSession, quote_id: str, *, day_start: datetime, failures_since: datetime
) -> dict[str, Any] | None:
    """The quote with the risk context columns of its holder and hospital, or None."""
    row = await rawsql.fetchrow(session, _GET_WITH_RISK, quote_id, day_start, failures_since)
    return _quote(row)


def _quote(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    quote = dict(row)
    quote["body"] = rawsql.jsonvalue(quote["body"])
    quote["cross_region"] = bool(quote["cross_region"])
    quote["created_at"] = rawsql.utc(quote["created_at"])
    quote["expires_at"] = rawsql.utc(quote["expires_at"])
    return quote
