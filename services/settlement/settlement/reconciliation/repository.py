"""All SQL of reconciliation: one day's postings on a hospital's receivable, leg by leg."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.models import UTCDateTime
from settlement.sql import AnyRow

_DAY = (
    text(
        """
    SELECT t.kind AS kind, t.ref AS ref, t.posted_at AS posted_at,
      coalesce(r.settlement_id, t.ref) AS settlement_id,
      sum(CASE WHEN a.kind = 'receivable' THEN e.amount_fen ELSE 0 END) AS receivable,
      sum(CASE WHEN a.kind = 'personal' THEN e.amount_fen ELSE 0 END) AS personal,
      sum(CASE WHEN a.kind = 'cash' THEN e.amount_fen ELSE 0 END) AS cash,
      sum(CASE WHEN a.kind IN ('fund', 'interregion') THEN e.amount_fen ELSE 0 END) AS fund
    FROM ledger_tx t
    JOIN ledger_entry e ON e.tx_id = t.id
    JOIN account a ON a.id = e.account_id
    LEFT JOIN refund r ON t.kind = 'refund' AND r.id = t.ref
    WHERE t.kind IN ('settlement', 'refund') AND t.id IN (
      SELECT x.tx_id FROM ledger_entry x
      WHERE x.account_id = :receivable AND x.posted_at >= :start AND x.posted_at < :end)
    GROUP BY t.kind, t.ref, t.posted_at, r.settlement_id
    ORDER BY t.posted_at, t.ref
    """
    )
    .bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
    .columns(
        kind=String(),
        ref=String(),
        posted_at=UTCDateTime(),
        settlement_id=String(),
        receivable=BigInteger(),
        personal=BigInteger(),
        cash=BigInteger(),
        fund=BigInteger(),
    )
)


async def day_postings(
    session: AsyncSession, receivable_account: str, start: datetime, end: datetime
) -> list[AnyRow]:
    """Settlement and refund postings that touched the receivable in [start, end)."""
    params = {"receivable": receivable_account, "start": start, "end": end}
    return list((await session.execute(_DAY, params)).all())
