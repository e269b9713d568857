"""Reconciliation rules: a hospital's day read from the ledger (so it cannot disagree with it).

A day is a business day (China Standard Time by default). Settlements count on the day they
were posted, refunds on the day they were posted, whatever day the settlement was.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from settlement.businessday import day_bounds
from settlement.deps import Parts
from settlement.ledger import accounts
from settlement.reconciliation import repository
from settlement.reconciliation.schemas import (
    CheckCreate,
    CheckRead,
    DailyTotals,
    DetailLine,
    Difference,
)
from shared.money import format_fen

CSV_HEADER = ["type", "id", "settlement_id", "posted_at", "total", "fund_pay", "account_pay",
              "cash_pay"]  # fmt: skip


async def day(
    session: AsyncSession, parts: Parts, hospital_client_id: str, on: date
) -> tuple[DailyTotals, list[DetailLine]]:
    """The day's totals and detail lines for one hospital."""
    start, end = day_bounds(on, parts.settings.business_utc_offset_hours)
    receivable = accounts.receivable_id(hospital_client_id)
    rows = await repository.day_postings(session, receivable, start, end)
    lines = [
        DetailLine(
            type="settlement" if r.kind == "settlement" else "refund",
            id=r.ref,
            settlement_id=r.settlement_id,
            posted_at=r.posted_at,
            total=r.receivable,
            fund_pay=-r.fund,
            account_pay=-r.personal,
            cash_pay=-r.cash,
        )
        for r in rows
    ]
    settled = [x for x in lines if x.type == "settlement"]
    refunds = [x for x in lines if x.type == "refund"]
    total = sum(x.total for x in settled)
    refund_total = -sum(x.total for x in refunds)
    totals = DailyTotals(
        date=on,
        count=len(settled),
        total=total,
        fund_pay=sum(x.fund_pay for x in settled),
        account_pay=sum(x.account_pay for x in settled),
        cash_pay=sum(x.cash_pay for x in settled),
        refund_count=len(refunds),
        refund_total=refund_total,
        refund_fund_pay=-sum(x.fund_pay for x in refunds),
        refund_account_pay=-sum(x.account_pay for x in refunds),
        refund_cash_pay=-sum(x.cash_pay for x in refunds),
        net_total=total - refund_total,
    )
    return totals, lines


def to_csv(lines: list[DetailLine]) -> str:
    """Detail lines (3202) as CSV with a header row; amounts in yuan, refunds negative."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for x in lines:
        writer.writerow(
            [x.type, x.id, x.settlement_id, x.posted_at.isoformat(), format_fen(x.total),
             format_fen(x.fund_pay), format_fen(x.account_pay), format_fen(x.cash_pay)]
        )  # fmt: skip
    return out.getvalue()


async def check(
    session: AsyncSession, parts: Parts, hospital_client_id: str, body: CheckCreate
) -> CheckRead:
    """Compare the hospital's figures with the platform's; list what differs."""
    totals, lines = await day(session, parts, hospital_client_id, body.date)
    differences: list[Difference] = []
    ours = {
        "count": (totals.count, str(totals.count)),
        "total": (totals.total, format_fen(totals.total)),
        "fund_pay": (totals.fund_pay, format_fen(totals.fund_pay)),
        "account_pay": (totals.account_pay, format_fen(totals.account_pay)),
        "cash_pay": (totals.cash_pay, format_fen(totals.cash_pay)),
    }
    for name, (value, text) in ours.items():
        theirs = getattr(body, name)
        if theirs != value:
            shown = str(theirs) if name == "count" else format_fen(theirs)
            differences.append(Difference(kind="figure", field=name, platform=text, hospital=shown))
    if body.settlement_ids is not None:
        platform_ids = {x.id for x in lines if x.type == "settlement"}
        hospital_ids = set(body.settlement_ids)
        differences.extend(
            Difference(kind="settlement", settlement_id=sid, issue="not-in-hospital-figures")
            for sid in sorted(platform_ids - hospital_ids)
        )
        differences.extend(
            Difference(kind="settlement", settlement_id=sid, issue="unknown-to-platform")
            for sid in sorted(hospital_ids - platform_ids)
        )
    match = not differences
    return CheckRead(
        match=match, platform=totals, differences=differences, detail=None if match else lines
    )
