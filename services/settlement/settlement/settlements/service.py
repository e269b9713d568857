"""Settlement (2207) and refund (2208): the rules of moving money.

Settling a quote, in one transaction and in this order (the lock order is fixed — settlement
row, holder's year, personal account, then the posting and the statistics — so that two
transactions never wait on each other in a cycle):

1. the quote must be the caller's (404), unexpired (422 ``quote-expired``) and pass the risk
   rules (422 ``risk-review``);
2. the settlement row is inserted (unique per quote and per token: 409 if taken);
3. the holder's annual totals and the personal balance are compared-and-set against what the
   quote assumed (409 ``quote-stale`` if either changed; the balance can never go negative:
   the conditional update requires it and a CHECK constraint backs it);
4. the settlement token is redeemed at issuance, idempotently by quote id, while the holder's
   rows are locked (a stale quote never burns the token; a crash after this is retried safely);
5. the balanced ledger transaction is posted and the risk statistics fed (on PostgreSQL in
   one statement, which also stores the answer under the request's Idempotency-Key).

The caller's Idempotency-Key record commits in the same transaction (see the router).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from settlement import idempotent, peers
from settlement.db import record_after_rollback
from settlement.deps import Parts
from settlement.errors import (
    AlreadyRefundedError,
    QuoteAlreadySettledError,
    QuoteExpiredError,
    QuoteNotFoundError,
    QuoteStaleError,
    SettlementNotFoundError,
)
from settlement.ledger import accounts
from settlement.ledger import repository as ledger_repository
from settlement.ledger import service as ledger_service
from settlement.ledger.accounts import AccountSpec
from settlement.quotes import repository as quote_repository
from settlement.quotes.schemas import LineRead, TotalsRead
from settlement.risk import service as risk_service
from settlement.settlements import repository
from settlement.settlements.schemas import RefundBrief, RefundRead, SettlementRead
from settlement.sql import is_postgres
from shared.app import Runtime
from shared.db import after_commit
from shared.problems import ProblemError
from shared.tokens.claims import InternalTokenClaims


def settlement_legs(row: Mapping[str, Any]) -> list[tuple[AccountSpec, int]]:
    """The ledger legs of a settlement (``row`` maps the settlement's columns).

    Debit the hospital's receivable with the bill's total; credit the personal account with
    what it paid, the cash clearing account with the cash, and the insured region's pooled
    fund with the fund's share — through inter-region clearing when treated elsewhere.
    """
    insured, treatment = row["insured_region"], row["treatment_region"]
    fund_account = (
        accounts.interregion(insured, treatment) if row["cross_region"] else accounts.fund(insured)
    )
    return [
        (accounts.receivable(row["hospital_client_id"], treatment), row["total_fen"]),
        (accounts.personal(row["holder_ref"], insured), -row["account_pay_fen"]),
        (fund_account, -row["fund_pay_fen"]),
        (accounts.CASH_CLEARING, -row["cash_pay_fen"]),
    ]


def _stale(attempt: risk_service.Attempt, now: datetime, what: str) -> BaseException:
    exc = QuoteStaleError(
        f"The holder's {what} changed since the quote; quote again.",
    )
    return record_after_rollback(exc, risk_service.failure_recorder(attempt, "quote-stale", now))


def first_read(parts: Parts, quote_id: str, now: datetime) -> tuple[str, tuple[Any, ...]]:
    """What :func:`settle` reads first (the quote, the risk context), for the request's
    Idempotency-Key claim to read in its own statement (PostgreSQL; one round trip fewer)."""
    day_start, failures_since = risk_service.context_window(parts.settings, now)
    return quote_repository.get_with_risk_read(
        quote_id, day_start=day_start, failures_since=failures_since, first=6
    )


async def settle(
    session: AsyncSession,
    runtime: Runtime,
    parts: Parts,
    principal: InternalTokenClaims,
    quote_id: str,
    now: datetime | None = None,
) -> SettlementRead:
    """Settle a quote (see the module docstring). Flushes; the request commits.

    The quote may have been read with the Idempotency-Key's claim (:func:`first_read`, with
    the same ``now``)."""
    now = parts.now() if now is None else now
    read = idempotent.claimed_read(session)
    if read is not None:
        quote = quote_repository.quote_from_read(read)
    else:
        day_start, failures_since = risk_service.context_window(parts.settings, now)
        quote = await quote_repository.get_with_risk(
            session, quote_id, day_start=day_start, failures_since=failures_since
        )
    if quote is None or quote["hospital_client_id"] != principal.client_id:
        parts.metrics.settlements.labels("quote-not-found", "unknown").inc()
        raise QuoteNotFoundError("No such quote for this hospital.")
    try:
        result = await _settle(session, runtime, parts, principal, quote, now)
    except ProblemError as exc:
        parts.metrics.settlements.labels(exc.slug, quote["insured_region"]).inc()
        raise
    # Counted once the posting commits (not when a retried or failed commit undoes it).
    after_commit(session, parts.metrics.settlements.labels("success", quote["insured_region"]).inc)
    return result


async def _settle(
    session: AsyncSession,
    runtime: Runtime,
    parts: Parts,
    principal: InternalTokenClaims,
    quote: Any,
    now: datetime,
) -> SettlementRead:
    attempt = risk_service.Attempt(
        stage="settlement",
        holder_ref=quote["holder_ref"],
        hospital_client_id=quote["hospital_client_id"],
        treatment_region=quote["treatment_region"],
        amount_fen=quote["total_fen"],
        quote_id=quote["id"],
    )
    if quote["expires_at"] <= now:
        exc = QuoteExpiredError("The quote expired; quote the bill again.")
        raise record_after_rollback(
            exc, risk_service.failure_recorder(attempt, "quote-expired", now)
        )
    assessment = risk_service.assess(quote, parts.settings, attempt, now)
    if assessment.held:
        raise risk_service.held_error(attempt, assessment, parts.metrics, now)
    settlement_id = "s_" + secrets.token_urlsafe(15)
    values = {
        "id": settlement_id,
        "quote_id": quote["id"],
        "token_sha256": quote["token_sha256"],
        "hospital_client_id": quote["hospital_client_id"],
        "holder_ref": quote["holder_ref"],
        "ecard_id": quote["ecard_id"],
        "insured_region": quote["insured_region"],
        "treatment_region": quote["treatment_region"],
        "cross_region": quote["cross_region"],
        "year": quote["year"],
        "total_fen": quote["total_fen"],
        "deductible_fen": quote["deductible_fen"],
        "fund_pay_fen": quote["fund_pay_fen"],
        "account_pay_fen": quote["account_pay_fen"],
        "cash_pay_fen": quote["cash_pay_fen"],
        "risk_score": assessment.score,
        "risk_flags": [h.rule for h in assessment.hits],
        "settled_at": now,
    }
    personal = accounts.personal(quote["holder_ref"], quote["insured_region"])
    await _claim_and_take(session, quote, values, personal, attempt, now)
    await peers.redeem_token(runtime, quote["settlement_token"], principal.client_id, quote["id"])
    body = quote["body"]
    answer = SettlementRead(
        settlement_id=settlement_id,
        status="settled",
        quote_id=quote["id"],
        insured_region=quote["insured_region"],
        treatment_region=quote["treatment_region"],
        cross_region=quote["cross_region"],
        totals=TotalsRead.model_validate(body["totals"]),
        settled_at=now,
        risk_flags=values["risk_flags"],
    )
    observe = (quote["holder_ref"], quote["hospital_client_id"], quote["total_fen"])
    if is_postgres(session):
        # The posting, the risk statistics and the idempotent answer: one round trip.
        await ledger_service.post(
            session,
            kind="settlement",
            ref=settlement_id,
            legs=settlement_legs(values),
            now=now,
            then=repository.post_and_observe_pg(
                *observe, finish=idempotent.finish_args(session, answer)
            ),
        )
    else:
        await ledger_service.post(
            session, kind="settlement", ref=settlement_id, legs=settlement_legs(values), now=now
        )
        await risk_service.observe(session, *observe)
    if assessment.hits:
        await risk_service.flag(session, attempt, assessment, parts.metrics, now, settlement_id)
    return answer


async def _claim_and_take(
    session: AsyncSession,
    quote: Mapping[str, Any],
    values: Mapping[str, Any],
    personal: AccountSpec,
    attempt: risk_service.Attempt,
    now: datetime,
) -> None:
    """Claim the settlement row, then compare-and-set the holder's year and balance.

    One statement on PostgreSQL (falling back to the steps for a holder's first settlement of
    the year or a holder never seen); the steps on SQLite.
    """
    year_done = account_done = False
    if is_postgres(session):
        got = await repository.claim_and_take_pg(
            session,
            values,
            assumed_deductible_used=quote["assumed_deductible_used_fen"],
            assumed_fund_paid=quote["assumed_fund_paid_fen"],
            account_id=personal.id,
            assumed_balance=quote["assumed_balance_fen"],
        )
        if not got["claimed"]:
            raise QuoteAlreadySettledError(
                "This quote (or its settlement token) is already settled."
            )
        if not got["year_ok"] and got["year_exists"]:
            raise _stale(attempt, now, "annual totals")
        if got["year_ok"] and not got["account_ok"] and got["account_exists"]:
            raise _stale(attempt, now, "personal-account balance")
        year_done, account_done = bool(got["year_ok"]), bool(got["account_ok"])
    elif not await repository.claim(session, values):
        raise QuoteAlreadySettledError("This quote (or its settlement token) is already settled.")
    if not year_done and not await repository.add_to_year_if_unchanged(
        session,
        holder_ref=quote["holder_ref"],
        year=quote["year"],
        d=quote["deductible_fen"],
        f=quote["fund_pay_fen"],
        ad=quote["assumed_deductible_used_fen"],
        af=quote["assumed_fund_paid_fen"],
    ):
        raise _stale(attempt, now, "annual totals")
    if not account_done and not await _take_from_account(session, personal, quote, now):
        raise _stale(attempt, now, "personal-account balance")


async def _take_from_account(
    session: AsyncSession, personal: AccountSpec, quote: Any, now: datetime
) -> bool:
    """Compare-and-set the personal balance; a holder never seen before has zero."""
    taken = await ledger_repository.withdraw_if_unchanged(
        session, personal.id, quote["account_pay_fen"], quote["assumed_balance_fen"]
    )
    if taken is not None:
        return True
    if quote["assumed_balance_fen"] != 0 or quote["account_pay_fen"] != 0:
        return False
    await ledger_repository.ensure_accounts(session, [personal], now)
    taken = await ledger_repository.withdraw_if_unchanged(session, personal.id, 0, 0)
    return taken is not None


def _read(row: Any, *, with_lines: bool) -> SettlementRead:
    body = row.quote_body
    refund = (
        RefundBrief(refund_id=row.refund_id, refunded_at=row.refunded_at, reason=row.refund_reason)
        if row.refund_id is not None
        else None
    )
    return SettlementRead(
        settlement_id=row.id,
        status="refunded" if refund else "settled",
        quote_id=row.quote_id,
        insured_region=row.insured_region,
        treatment_region=row.treatment_region,
        cross_region=row.cross_region,
        totals=TotalsRead.model_validate(body["totals"]),
        settled_at=row.settled_at,
        risk_flags=list(row.risk_flags),
        lines=[LineRead.model_validate(x) for x in body["lines"]] if with_lines else None,
        refund=refund,
    )


async def get(
    session: AsyncSession, principal: InternalTokenClaims, settlement_id: str
) -> SettlementRead:
    """The caller's settlement (another hospital's is 404, like an unknown one)."""
    row = await repository.get_with_refund(session, settlement_id)
    if row is None or row.hospital_client_id != principal.client_id:
        raise SettlementNotFoundError("No such settlement for this hospital.")
    return _read(row, with_lines=True)


async def refund(
    session: AsyncSession,
    parts: Parts,
    principal: InternalTokenClaims,
    settlement_id: str,
    reason: str,
) -> RefundRead:
    """Reverse a whole settlement once: fund, account, cash and the holder's annual totals.

    Lock order as in :func:`settle`: refund row, holder's year, personal account, posting.
    Raises 404 for another hospital's settlement, 409 if it was already refunded.
    """
    now = parts.now()
    row = await repository.get_with_refund(session, settlement_id)
    if row is None or row.hospital_client_id != principal.client_id:
        parts.metrics.refunds.labels("settlement-not-found", "unknown").inc()
        raise SettlementNotFoundError("No such settlement for this hospital.")
    try:
        result = await _refund(session, row, reason, now)
    except ProblemError as exc:
        parts.metrics.refunds.labels(exc.slug, row.insured_region).inc()
        raise
    after_commit(session, parts.metrics.refunds.labels("success", row.insured_region).inc)
    return result


async def _refund(session: AsyncSession, row: Any, reason: str, now: datetime) -> RefundRead:
    refund_id = "r_" + secrets.token_urlsafe(15)
    claimed = await repository.claim_refund(
        session,
        {
            "id": refund_id,
            "settlement_id": row.id,
            "hospital_client_id": row.hospital_client_id,
            "reason": reason,
            "refunded_at": now,
        },
    )
    if not claimed:
        raise AlreadyRefundedError("This settlement was already refunded.")
    await repository.subtract_from_year(
        session, holder_ref=row.holder_ref, year=row.year, d=row.deductible_fen, f=row.fund_pay_fen
    )
    personal = accounts.personal(row.holder_ref, row.insured_region)
    if row.account_pay_fen:
        await ledger_repository.deposit(session, personal.id, row.account_pay_fen)
    legs = [(spec, -amount) for spec, amount in settlement_legs(row._mapping)]
    await ledger_service.post(session, kind="refund", ref=refund_id, legs=legs, now=now)
    return RefundRead(
        refund_id=refund_id,
        settlement_id=row.id,
        totals=TotalsRead.model_validate(row.quote_body["totals"]),
        refunded_at=now,
        reason=reason,
    )
