"""All SQL of the ledger: accounts, postings, conditional balance updates, the check queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from settlement import rawsql
from settlement.ledger.accounts import AccountSpec
from settlement.models import Account, LedgerEntry, LedgerTx
from settlement.rawsql import Statement
from settlement.sql import insert_for, table
from shared.db import driver_connection

ACCOUNT = table(Account)
TX = table(LedgerTx)
ENTRY = table(LedgerEntry)


async def ensure_accounts(
    session: AsyncSession, specs: Sequence[AccountSpec], now: datetime
) -> None:
    """Create the accounts that do not exist yet (one statement, no locks on existing rows)."""
    rows = [
        {
            "id": s.id,
            "kind": s.kind.value,
            "owner_ref": s.owner_ref,
            "region_code": s.region_code,
            "balance_fen": 0 if s.tracked else None,
            "created_at": now,
        }
        for s in specs
    ]
    await session.execute(insert_for(session, ACCOUNT).values(rows).on_conflict_do_nothing())


async def insert_posting(
    session: AsyncSession,
    *,
    tx_id: str,
    kind: str,
    ref: str,
    legs: Sequence[tuple[str, int]],
    now: datetime,
) -> None:
    """Insert a transaction and its legs (the caller checked they balance)."""
    await session.execute(TX.insert().values(id=tx_id, kind=kind, ref=ref, posted_at=now))
    await session.execute(
        ENTRY.insert().values(
            [
                {"tx_id": tx_id, "account_id": acc, "amount_fen": amount, "posted_at": now}
                for acc, amount in legs
            ]
        )
    )


_WITHDRAW = Statement(
    "UPDATE account SET balance_fen = balance_fen - $2 "
    "WHERE id = $1 AND balance_fen = $3 AND balance_fen >= $2 RETURNING balance_fen"
)
_DEPOSIT = Statement(
    "UPDATE account SET balance_fen = balance_fen + $2 WHERE id = $1 RETURNING balance_fen"
)

# Accounts, the transaction and its legs in one round trip (PostgreSQL). The foreign keys of
# the legs are checked at the end of the statement, when the sibling inserts are visible.
_POST_PG = """
WITH acc AS (
  INSERT INTO account (id, kind, owner_ref, region_code, balance_fen, created_at)
  SELECT a.id, a.kind, a.owner_ref, a.region_code, a.balance_fen, $4
  FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[])
    AS a(id, kind, owner_ref, region_code, balance_fen)
  ON CONFLICT DO NOTHING
), tx AS (
  INSERT INTO ledger_tx (id, kind, ref, posted_at) VALUES ($1, $2, $3, $4)
)
INSERT INTO ledger_entry (tx_id, account_id, amount_fen, posted_at)
SELECT $1, l.account_id, l.amount_fen, $4
FROM unnest($10::text[], $11::bigint[]) AS l(account_id, amount_fen)
"""


async def withdraw_if_unchanged(
    session: AsyncSession, account_id: str, amount: int, expected: int
) -> int | None:
    """Take ``amount`` if the balance is still ``expected`` (and covers it): the new balance.

    The row lock taken here is held to commit; a concurrent writer waits and then sees the
    new balance, so at most one of two quotes that assumed the same balance goes through.
    """
    row = await rawsql.fetchrow(session, _WITHDRAW, account_id, amount, expected)
    return None if row is None else int(row["balance_fen"])


async def deposit(session: AsyncSession, account_id: str, amount: int) -> int | None:
    """Add ``amount`` (≥ 0) to a tracked balance; None if there is no such account."""
    row = await rawsql.fetchrow(session, _DEPOSIT, account_id, amount)
    return None if row is None else int(row["balance_fen"])


def post_then_pg(statement: str, *, ctes: tuple[str, ...] = ()) -> str:
    """The posting statement followed by ``statement`` (its parameters numbered from $12), in
    one round trip: the ledger's inserts become CTEs, then ``ctes`` (``name AS (...)``), and
    ``statement`` is the main query."""
    head, sep, tail = _POST_PG.partition("INSERT INTO ledger_entry")
    more = "".join(f", {cte}\n" for cte in ctes)
    return f"{head}, entries AS (\n{sep}{tail})\n{more}{statement}"


async def post_pg(
    session: AsyncSession,
    *,
    tx_id: str,
    kind: str,
    ref: str,
    specs: Sequence[AccountSpec],
    legs: Sequence[tuple[str, int]],
    now: datetime,
    then: tuple[str, Sequence[Any]] | None = None,
) -> None:
    """Create missing accounts, the transaction and its legs in one statement (PostgreSQL).

    ``then``: a statement made by :func:`post_then_pg` and its own arguments, sent instead.
    """
    conn = await driver_connection(session)
    sql, extra = (_POST_PG, ()) if then is None else then
    await rawsql.execute_pg(
        conn,
        sql,
        tx_id,
        kind,
        ref,
        now,
        [s.id for s in specs],
        [s.kind.value for s in specs],
        [s.owner_ref for s in specs],
        [s.region_code for s in specs],
        [0 if s.tracked else None for s in specs],
        [acc for acc, _ in legs],
        [amount for _, amount in legs],
        *extra,
    )


# Each ledger transaction's legs summed by the kind of account they touch.
_LEGS = """
WITH legs AS (
  SELECT e.tx_id AS tx_id,
    sum(CASE WHEN a.kind = 'receivable' THEN e.amount_fen ELSE 0 END) AS receivable,
    sum(CASE WHEN a.kind = 'personal' THEN e.amount_fen ELSE 0 END) AS personal,
    sum(CASE WHEN a.kind = 'cash' THEN e.amount_fen ELSE 0 END) AS cash,
    sum(CASE WHEN a.kind IN ('fund', 'interregion') THEN e.amount_fen ELSE 0 END) AS fund
  FROM ledger_entry e JOIN account a ON a.id = e.account_id
  GROUP BY e.tx_id
)
"""

CHECKS: dict[str, str] = {
    "transactions": "SELECT count(*) FROM ledger_tx",
    "entries": "SELECT count(*) FROM ledger_entry",
    "accounts": "SELECT count(*) FROM account",
    "unbalanced_transactions": """
        SELECT count(*) FROM ledger_tx t
        WHERE (SELECT count(*) FROM ledger_entry e WHERE e.tx_id = t.id) < 2
           OR (SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e WHERE e.tx_id = t.id) <> 0
    """,
    "negative_balances": """
        SELECT count(*) FROM account a
        WHERE a.kind = 'personal' AND (a.balance_fen < 0 OR
          (SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e WHERE e.account_id = a.id) < 0)
    """,
    "balance_mismatches": """
        SELECT count(*) FROM account a
        WHERE a.balance_fen IS NOT NULL AND a.balance_fen <>
          (SELECT coalesce(sum(e.amount_fen), 0) FROM ledger_entry e WHERE e.account_id = a.id)
    """,
    "unmatched_settlements": _LEGS  # noqa: S608 (constant SQL)
    + """
        SELECT count(*) FROM settlement s
        LEFT JOIN ledger_tx t ON t.kind = 'settlement' AND t.ref = s.id
        LEFT JOIN legs l ON l.tx_id = t.id
        WHERE t.id IS NULL OR l.tx_id IS NULL OR l.receivable <> s.total_fen
           OR -l.personal <> s.account_pay_fen OR -l.cash <> s.cash_pay_fen
           OR -l.fund <> s.fund_pay_fen
    """,
    "unmatched_refunds": _LEGS  # noqa: S608 (constant SQL)
    + """
        SELECT count(*) FROM refund r
        JOIN settlement s ON s.id = r.settlement_id
        LEFT JOIN ledger_tx t ON t.kind = 'refund' AND t.ref = r.id
        LEFT JOIN legs l ON l.tx_id = t.id
        WHERE t.id IS NULL OR l.tx_id IS NULL OR -l.receivable <> s.total_fen
           OR l.personal <> s.account_pay_fen OR l.cash <> s.cash_pay_fen
           OR l.fund <> s.fund_pay_fen
    """,
    "orphan_transactions": """
        SELECT count(*) FROM ledger_tx t
        WHERE (t.kind = 'settlement' AND NOT EXISTS (SELECT 1 FROM settlement s WHERE s.id = t.ref))
           OR (t.kind = 'refund' AND NOT EXISTS (SELECT 1 FROM refund r WHERE r.id = t.ref))
    """,
    "annual_total_mismatches": """
        SELECT count(*) FROM holder_year y
        WHERE y.fund_paid_fen <> (
          SELECT coalesce(sum(s.fund_pay_fen), 0) FROM settlement s
          WHERE s.holder_ref = y.holder_ref AND s.year = y.year
            AND NOT EXISTS (SELECT 1 FROM refund r WHERE r.settlement_id = s.id))
    """,
}


async def run_checks(session: AsyncSession) -> dict[str, int]:
    """Each check's count (full scans: an operator's tool, not a request path)."""
    out: dict[str, int] = {}
    for name, sql in CHECKS.items():
        out[name] = int((await session.execute(text(sql))).scalar_one())
    return out
