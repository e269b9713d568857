"""Personal accounts: opened from identity's events, topped up by ops, read by holders' apps.

Every balance change is a ledger transaction from the region's funding account, taken under
the account's row lock (the same lock settlements take), so a balance always equals the sum
of its entries.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from settlement.accounts import repository
from settlement.accounts.schemas import (
    AccountRead,
    HolderSettlement,
    HolderSettlementPage,
    TopUpCreate,
    TopUpRead,
)
from settlement.deps import Parts
from settlement.errors import HolderNotFoundError
from settlement.ledger import accounts
from settlement.ledger import repository as ledger_repository
from settlement.ledger import service as ledger_service
from settlement.policies import service as policy_service
from settlement.quotes import repository as quote_repository
from settlement.risk.service import decode_cursor, encode_cursor
from settlement.settlements import repository as settlement_repository
from shared.wire import HolderAccountSummary, HolderUpserted, SettlementBrief


async def apply_holder(session: AsyncSession, event: HolderUpserted, now: datetime) -> bool:
    """Create or update a holder; open the account with its opening balance the first time.

    Returns True if an opening balance was posted. Safe to call again: the opening is
    applied once (a flag flipped by a conditional update).
    """
    await repository.upsert_holder(
        session,
        holder_ref=event.holder_ref,
        insured_region=event.insured_region,
        insurance_type=event.insurance_type.value,
        birth_date=event.birth_date,
        gender=event.gender,
        now=now,
    )
    personal = accounts.personal(event.holder_ref, event.insured_region)
    await ledger_repository.ensure_accounts(session, [personal], now)
    if not await repository.mark_opening_applied(session, event.holder_ref):
        return False
    amount = event.opening_balance_fen or 0
    if amount <= 0:
        return False
    await ledger_repository.deposit(session, personal.id, amount)
    await ledger_service.post(
        session,
        kind="opening",
        ref=event.holder_ref,
        legs=[(accounts.funding(event.insured_region), -amount), (personal, amount)],
        now=now,
    )
    return True


async def top_up(
    session: AsyncSession, holder_ref: str, body: TopUpCreate, now: datetime
) -> TopUpRead:
    """Credit a personal account once per (holder, reference); 404 for an unknown holder."""
    holder = await repository.get_holder(session, holder_ref)
    if holder is None:
        raise HolderNotFoundError("No such holder.")
    personal = accounts.personal(holder_ref, holder.insured_region)
    await ledger_repository.ensure_accounts(session, [personal], now)
    balance = await ledger_repository.deposit(session, personal.id, 0)  # takes the row lock
    ref = "t:" + hashlib.sha256(f"{holder_ref}\n{body.reference}".encode()).hexdigest()[:48]
    if balance is None or await repository.has_tx(session, "topup", ref):
        return TopUpRead(
            holder_ref=holder_ref,
            reference=body.reference,
            amount=body.amount,
            balance=balance or 0,
            created=False,
        )
    if body.amount > 0:
        balance = await ledger_repository.deposit(session, personal.id, body.amount)
        await ledger_service.post(
            session,
            kind="topup",
            ref=ref,
            legs=[(accounts.funding(holder.insured_region), -body.amount), (personal, body.amount)],
            now=now,
        )
    return TopUpRead(
        holder_ref=holder_ref,
        reference=body.reference,
        amount=body.amount,
        balance=balance or 0,
        created=body.amount > 0,
    )


async def _figures(
    session: AsyncSession, parts: Parts, holder_ref: str, insured_region: str
) -> tuple[int, int, int, int, int | None]:
    """(year, balance, deductible used, fund paid, cap remaining or None)."""
    year = parts.year(parts.now())
    state = await quote_repository.holder_state(
        session,
        account_id=accounts.personal(holder_ref, insured_region).id,
        holder_ref=holder_ref,
        year=year,
    )
    policy = await policy_service.in_force(session, parts.policies, insured_region, year)
    cap = None if policy is None else max(0, policy.params.annual_cap - state.fund_paid_fen)
    return year, state.balance_fen, state.deductible_used_fen, state.fund_paid_fen, cap


async def account(
    session: AsyncSession, parts: Parts, ecard_id: str, holder_ref: str, insured_region: str
) -> AccountRead:
    """The holder's balance and this year's totals (the e-card's ownership already checked)."""
    year, balance, used, paid, cap = await _figures(session, parts, holder_ref, insured_region)
    return AccountRead(
        ecard_id=ecard_id,
        insured_region=insured_region,
        opened=await repository.get_holder(session, holder_ref) is not None,
        balance=balance,
        year=year,
        deductible_used=used,
        fund_paid=paid,
        cap_remaining=cap,
    )


async def settlements(
    session: AsyncSession, holder_ref: str, *, cursor: str | None, limit: int
) -> HolderSettlementPage:
    """The holder's settlements, newest first, ``limit`` at a time."""
    after = decode_cursor(cursor) if cursor else None
    rows = await settlement_repository.holder_page(
        session, holder_ref, after=after, limit=limit + 1
    )
    items = [
        HolderSettlement(
            settlement_id=r.id,
            settled_at=r.settled_at,
            hospital=r.hospital_client_id,
            treatment_region=r.treatment_region,
            cross_region=r.cross_region,
            total=r.total_fen,
            fund_pay=r.fund_pay_fen,
            account_pay=r.account_pay_fen,
            cash_pay=r.cash_pay_fen,
            status="refunded" if r.refund_id else "settled",
            refunded_at=r.refunded_at,
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    last = items[-1] if items else None
    next_cursor = encode_cursor(last.settled_at, last.settlement_id) if more and last else None
    return HolderSettlementPage(items=items, next_cursor=next_cursor)


async def summary(
    session: AsyncSession, parts: Parts, holder_ref: str, limit: int
) -> HolderAccountSummary:
    """What issuance's e-card web page shows (404 for a holder never seen)."""
    holder = await repository.get_holder(session, holder_ref)
    if holder is None:
        raise HolderNotFoundError("No such holder.")
    year, balance, used, paid, cap = await _figures(
        session, parts, holder_ref, holder.insured_region
    )
    rows = await settlement_repository.holder_page(session, holder_ref, after=None, limit=limit)
    return HolderAccountSummary(
        holder_ref=holder_ref,
        year=year,
        balance_fen=balance,
        deductible_used_fen=used,
        fund_paid_fen=paid,
        cap_remaining_fen=cap or 0,
        recent=[
            SettlementBrief(
                settlement_id=r.id,
                settled_at=r.settled_at,
                hospital_name=r.hospital_client_id,
                total_fen=r.total_fen,
                fund_pay_fen=r.fund_pay_fen,
                account_pay_fen=r.account_pay_fen,
                cash_pay_fen=r.cash_pay_fen,
                refunded=r.refund_id is not None,
            )
            for r in rows
        ],
    )
