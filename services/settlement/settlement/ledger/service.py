"""Posting balanced transactions and checking the books.

Every posting goes through :func:`post`, which refuses (in code, on every database) a
transaction that does not sum to zero or has fewer than two legs; PostgreSQL checks the same
again at COMMIT with a deferred constraint trigger, so not even a bug here can commit
unbalanced books there.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.ledger import repository
from settlement.ledger.accounts import AccountSpec
from settlement.ledger.schemas import LedgerCheck
from settlement.sql import is_postgres
from shared.db import Database

logger = logging.getLogger("settlement.ledger")


class UnbalancedPostingError(RuntimeError):
    """A programming error: legs that do not sum to zero (never a client's fault)."""


def new_tx_id() -> str:
    return "tx_" + secrets.token_urlsafe(18)


def legs_of(pairs: Sequence[tuple[AccountSpec, int]]) -> list[tuple[str, int]]:
    """Merge legs per account and drop zero amounts; keeps the first-seen account order."""
    merged: dict[str, int] = {}
    for spec, amount in pairs:
        merged[spec.id] = merged.get(spec.id, 0) + amount
    return [(acc, amount) for acc, amount in merged.items() if amount != 0]


async def post(
    session: AsyncSession,
    *,
    kind: str,
    ref: str,
    legs: Sequence[tuple[AccountSpec, int]],
    now: datetime,
    ensure: bool = True,
    then: tuple[str, Sequence[Any]] | None = None,
) -> str:
    """Post one balanced transaction; returns its id.

    ``legs`` are (account, signed fen). Accounts missing so far are created (``ensure``).
    Tracked balances are NOT touched here: callers update them with the conditional updates
    of :mod:`settlement.ledger.repository` first, under the fixed lock order.
    Raises :class:`UnbalancedPostingError` for legs that do not balance.
    ``then`` (PostgreSQL only): a further statement sent with the posting, see
    :func:`settlement.ledger.repository.post_then_pg`.
    """
    merged = legs_of(legs)
    if sum(a for _, a in merged) != 0 or len(merged) < 2:
        raise UnbalancedPostingError(f"{kind} {ref}: legs do not balance")
    specs = list({spec.id: spec for spec, _ in legs}.values()) if ensure else []
    tx_id = new_tx_id()
    if is_postgres(session):
        await repository.post_pg(
            session, tx_id=tx_id, kind=kind, ref=ref, specs=specs, legs=merged, now=now, then=then
        )
        return tx_id
    if then is not None:
        raise ValueError("a statement sent with the posting is PostgreSQL only")
    if specs:
        await repository.ensure_accounts(session, specs, now)
    await repository.insert_posting(session, tx_id=tx_id, kind=kind, ref=ref, legs=merged, now=now)
    return tx_id


async def check(session: AsyncSession, *, now: datetime) -> LedgerCheck:
    """Run every check over the whole ledger (an operator's tool; full scans)."""
    counts = await repository.run_checks(session)
    problems = sum(v for k, v in counts.items() if k not in ("transactions", "entries", "accounts"))
    return LedgerCheck(
        balanced=problems == 0,
        problems=problems,
        checked_at=now,
        **counts,
    )


async def check_loop(
    db: Database, gauge: Gauge, interval: float, clock: Callable[[], datetime]
) -> None:
    """Check the whole ledger every ``interval`` seconds and set ``gauge`` to its problems.

    So that ``essc_ledger_imbalance`` (alert EsscLedgerImbalance) reflects the books even
    when no operator runs the check. A failing check is logged and leaves the gauge as is.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            async with db.sessionmaker() as session:
                result = await check(session, now=clock())
                await session.rollback()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("periodic ledger check failed: %s", type(exc).__name__)
            continue
        gauge.set(result.problems)
        if result.problems:
            logger.error("ledger check found problems", extra={"problems": result.problems})
