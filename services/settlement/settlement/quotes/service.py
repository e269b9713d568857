"""Pre-settlement rules: who the token is for, which policy applies, the split, the risk check.

A quote commits no money: it stores the split with the balance and annual totals it assumed,
for :mod:`settlement.settlements.service` to re-check and post within ``quote_ttl_seconds``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncSession

from settlement import peers
from settlement.businessday import business_date
from settlement.calculator import (
    BillItem,
    HolderState,
    Split,
    Terms,
    format_ratio,
    line_amount,
    percent,
    split_bill,
)
from settlement.deps import Parts
from settlement.errors import (
    BillTooLargeError,
    HospitalProfileError,
    PaymentNotEnabledError,
    PolicyMissingError,
    SettlementTokenInvalidError,
    SettlementTokenUsedError,
)
from settlement.ledger import accounts
from settlement.policies import service as policy_service
from settlement.policies.service import PolicyInForce
from settlement.quotes import repository
from settlement.quotes.schemas import (
    BillLine,
    LineRead,
    PolicyRef,
    QuoteCreate,
    QuoteRead,
    TotalsRead,
)
from settlement.risk import service as risk_service
from shared.app import Runtime
from shared.money import MAX_FEN, format_fen
from shared.tokens.claims import InternalTokenClaims
from shared.validation import region_name as _region_name
from shared.wire import EcardStatus, SettlementTokenInfo


@lru_cache(maxsize=4096)
def region_name(code: str) -> str | None:
    """GB/T 2260 name of a region (python-stdnum's table walk, cached: it runs per quote)."""
    return _region_name(code)


BAND_WORDS = {"under_45": "under 45", "from_45": "45 and over", "retired": "retired"}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hospital_profile(principal: InternalTokenClaims) -> tuple[str, int]:
    """The calling hospital's (region, level) from its token; 403 if the token lacks them."""
    region, level = principal.region_code, principal.level
    if region is None or level is None or len(region) != 6 or not region.isdigit():
        raise HospitalProfileError("The hospital's region and level are not on record.")
    return region, level


def bill_items(lines: list[BillLine]) -> list[BillItem]:
    """The calculator's items; 422 naming the line if an amount exceeds the money range."""
    items = [
        BillItem(line.code, line.category, line.quantity, line.unit_price, line.price_cap)
        for line in lines
    ]
    errors: list[dict[str, str]] = []
    total = 0
    for i, item in enumerate(items):
        amount = line_amount(item)
        total += amount
        if amount > MAX_FEN:
            errors.append({"field": f"items[{i}].quantity", "message": "line amount too large"})
    if errors or total > MAX_FEN:
        raise BillTooLargeError(
            "The bill exceeds the largest amount the platform settles.",
            errors=errors or [{"field": "items", "message": "bill total too large"}],
        )
    if total == 0:
        raise BillTooLargeError(
            "A bill must have a total above zero.",
            errors=[{"field": "items", "message": "bill total is zero"}],
        )
    return items


def check_token(info: SettlementTokenInfo, hospital_client_id: str, now: datetime) -> None:
    """Refuse a token issuance resolved but that cannot pay (defensive: issuance checks too)."""
    if info.hospital_client_id != hospital_client_id or info.expires_at <= now:
        raise SettlementTokenInvalidError(
            "The settlement token is unknown, expired or was issued to another hospital.",
            errors=[{"field": "settlement_token", "message": "unknown, expired or not yours"}],
        )
    if info.redeemed_at is not None:
        raise SettlementTokenUsedError("The settlement token was already used for another bill.")
    if info.sign_level < 2 or info.ecard_status is not EcardStatus.ACTIVE:
        raise PaymentNotEnabledError("The e-card is not active or payment is not enabled.")


def describe(
    split: Split,
    terms: Terms,
    policy: PolicyInForce,
    *,
    visit: str,
    level: int,
    band: str,
    insured: str,
    treatment: str,
    state: HolderState,
) -> list[str]:
    """The rules applied, in plain words and in the order they were applied."""
    t = split.totals
    rules = [
        f"Policy of the insured region {insured} ({region_name(insured) or insured}): "
        f"{policy.params.name}, {policy.year} version {policy.version}."
    ]
    if insured != treatment:
        rules.append(
            f"Cross-region visit: treated in {treatment} ({region_name(treatment) or treatment}); "
            "the insured region's deductible, ratios and cap apply."
        )
    if t.fully_self_paid:
        rules.append(f"Class C items are fully self-paid: {format_fen(t.fully_self_paid)}.")
    if t.over_cap:
        rules.append(f"Unit prices above their cap are self-paid: {format_fen(t.over_cap)}.")
    if t.class_b_self_pay:
        rules.append(
            f"Class B items: {percent(terms.class_b_share)} self-paid first: "
            f"{format_fen(t.class_b_self_pay)}."
        )
    rules.append(f"In scope of the fund: {format_fen(t.in_scope)}.")
    rules.append(
        f"Deductible for {visit} care at a level-{level} hospital: "
        f"{format_fen(terms.deductible_fen)} a year; {format_fen(state.deductible_used_fen)} used "
        f"before this bill, {format_fen(t.deductible)} taken from it."
    )
    rules.append(
        f"Pooled fund pays {percent(terms.fund_ratio)} ({visit}, level {level}, "
        f"{BAND_WORDS[band]}) of the in-scope amount after the deductible: "
        f"{format_fen(t.fund_pay)}."
    )
    cap_text = (
        f"Annual cap {format_fen(terms.annual_cap_fen)}: {format_fen(split.cap_remaining_before)} "
        "remained before this bill"
    )
    rules.append(cap_text + ("; the cap limited the fund's share." if split.cap_reached else "."))
    if terms.account_may_pay:
        rules.append(
            f"Personal account pays the holder's share up to its balance "
            f"({format_fen(state.balance_fen)}): {format_fen(t.account_pay)}."
        )
    else:
        rules.append("This policy does not let the personal account pay.")
    rules.append(f"The rest is paid in cash: {format_fen(t.cash_pay)}.")
    return rules


async def create(
    session: AsyncSession,
    runtime: Runtime,
    parts: Parts,
    principal: InternalTokenClaims,
    body: QuoteCreate,
) -> QuoteRead:
    """Compute and store a quote (2206). Raises 403/404/409/422 problems; commits no money."""
    now = parts.now()
    treatment, level = hospital_profile(principal)
    items = bill_items(body.items)
    info = await peers.resolve_token(runtime, body.settlement_token, principal.client_id)
    check_token(info, principal.client_id, now)
    year = parts.year(now)
    policy = await policy_service.in_force(session, parts.policies, info.insured_region, year)
    if policy is None:
        raise PolicyMissingError(
            f"No policy is loaded for the insured region {info.insured_region}."
        )
    today = business_date(now, parts.settings.business_utc_offset_hours)
    band = policy_service.age_band(info.insurance_type, info.birth_date, today)
    terms = policy_service.terms_for(policy.params, body.visit.type, level, band)
    personal = accounts.personal(info.holder_ref, info.insured_region)
    day_start, failures_since = risk_service.context_window(parts.settings, now)
    state, risk_row = await repository.state_and_risk(
        session,
        account_id=personal.id,
        holder_ref=info.holder_ref,
        year=year,
        hospital_client_id=principal.client_id,
        day_start=day_start,
        failures_since=failures_since,
    )
    split = split_bill(items, terms, state)
    quote_id = "q_" + secrets.token_urlsafe(15)
    attempt = risk_service.Attempt(
        stage="quote",
        holder_ref=info.holder_ref,
        hospital_client_id=principal.client_id,
        treatment_region=treatment,
        amount_fen=split.totals.total,
        quote_id=quote_id,
    )
    assessment = risk_service.assess(risk_row, parts.settings, attempt, now)
    if assessment.held:
        raise risk_service.held_error(attempt, assessment, parts.metrics, now)
    t = split.totals
    answer = QuoteRead(
        quote_id=quote_id,
        expires_at=now + timedelta(seconds=parts.settings.quote_ttl_seconds),
        insured_region=info.insured_region,
        treatment_region=treatment,
        cross_region=info.insured_region != treatment,
        visit_type=body.visit.type,
        hospital_level=level,
        age_band=band,
        policy=PolicyRef(region_code=policy.region_code, year=policy.year, version=policy.version),
        totals=TotalsRead(
            total=t.total,
            fully_self_paid=t.fully_self_paid,
            over_cap=t.over_cap,
            class_b_self_pay=t.class_b_self_pay,
            in_scope=t.in_scope,
            deductible=t.deductible,
            fund_pay=t.fund_pay,
            fund_ratio=format_ratio(terms.fund_ratio),
            account_pay=t.account_pay,
            cash_pay=t.cash_pay,
        ),
        lines=[
            LineRead(
                code=ln.code,
                name=src.name,
                category=src.category,
                amount=ln.amount,
                self_paid=ln.self_paid,
                fully_self_paid=ln.fully_self_paid,
                over_cap=ln.over_cap,
                class_b_self_pay=ln.class_b_self_pay,
                in_scope=ln.in_scope,
                deductible=ln.deductible,
                fund_pay=ln.fund_pay,
                account_pay=ln.account_pay,
                cash_pay=ln.cash_pay,
                reason=ln.reason,
            )
            for ln, src in zip(split.lines, body.items, strict=True)
        ],
        rules=describe(
            split,
            terms,
            policy,
            visit=body.visit.type,
            level=level,
            band=band,
            insured=info.insured_region,
            treatment=treatment,
            state=state,
        ),
        risk=assessment.read(),
    )
    await repository.insert(
        session,
        {
            "id": quote_id,
            "hospital_client_id": principal.client_id,
            "hospital_level": level,
            "treatment_region": treatment,
            "settlement_token": body.settlement_token,
            "token_sha256": token_digest(body.settlement_token),
            "ecard_id": info.ecard_id,
            "partner_client_id": info.partner_client_id,
            "holder_ref": info.holder_ref,
            "insured_region": info.insured_region,
            "policy_id": policy.id,
            "year": year,
            "visit_type": body.visit.type,
            "cross_region": answer.cross_region,
            "total_fen": t.total,
            "deductible_fen": t.deductible,
            "fund_pay_fen": t.fund_pay,
            "account_pay_fen": t.account_pay,
            "cash_pay_fen": t.cash_pay,
            "assumed_balance_fen": state.balance_fen,
            "assumed_deductible_used_fen": state.deductible_used_fen,
            "assumed_fund_paid_fen": state.fund_paid_fen,
            "body": answer.model_dump(mode="json"),
            "created_at": now,
            "expires_at": answer.expires_at,
        },
    )
    return answer
