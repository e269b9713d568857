"""``POST /v1/settlements`` (2207), ``GET /v1/settlements/{id}``, refunds (2208); hospitals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from settlement import idempotent
from settlement.db import KILL_AFTER_COMMIT, SessionDep
from settlement.deps import HospitalRead, HospitalWrite, Parts, PartsDep, RuntimeDep
from settlement.settlements import service
from settlement.settlements.schemas import (
    RefundCreate,
    RefundRead,
    SettlementCreate,
    SettlementRead,
)
from shared.openapi import IDEMPOTENCY_REQUIRED
from shared.settings import Environment
from shared.validation import IdPath

router = APIRouter(tags=["settlement"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Required: 1–255 printable characters."),
]
SettlementId = IdPath


def _fault_requested(request: Request, parts: Parts) -> None:
    """Test-only: crash right after the commit (honoured only with environment=test)."""
    settings = parts.settings
    if (
        settings.fault_injection
        and settings.environment is Environment.TEST
        and request.headers.get("x-test-fault") == "kill-after-commit"
    ):
        setattr(request.state, KILL_AFTER_COMMIT, True)


@router.post(
    "/v1/settlements",
    status_code=201,
    response_model=SettlementRead,
    openapi_extra=IDEMPOTENCY_REQUIRED,
)
async def create_settlement(
    body: SettlementCreate,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    parts: PartsDep,
    principal: HospitalWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Settle a quote: redeem the settlement token and post the split to the ledger, once.

    409 ``quote-stale`` if the holder's balance or annual totals changed since the quote,
    422 ``quote-expired`` after ten minutes, 422 ``risk-review`` when held by the risk rules.
    """
    _fault_requested(request, parts)
    now = parts.now()
    return await idempotent.retrying(
        session,
        lambda: idempotent.run(
            request,
            session,
            parts,
            client_id=principal.client_id,
            key_header=idempotency_key,
            required=True,
            status_code=201,
            work=lambda: service.settle(session, runtime, parts, principal, body.quote_id, now),
            read=service.first_read(parts, body.quote_id, now),
        ),
    )


@router.get("/v1/settlements/{settlement_id}", response_model=SettlementRead)
async def get_settlement(
    settlement_id: SettlementId, session: SessionDep, principal: HospitalRead
) -> SettlementRead:
    """The hospital's own settlement with its lines and refund; another hospital's is 404."""
    return await service.get(session, principal, settlement_id)


@router.post(
    "/v1/settlements/{settlement_id}/refunds",
    status_code=201,
    response_model=RefundRead,
    openapi_extra=IDEMPOTENCY_REQUIRED,
)
async def create_refund(
    settlement_id: SettlementId,
    body: RefundCreate,
    request: Request,
    session: SessionDep,
    parts: PartsDep,
    principal: HospitalWrite,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Reverse the whole settlement (fund, account, cash, annual totals); at most once (409)."""
    return await idempotent.retrying(
        session,
        lambda: idempotent.run(
            request,
            session,
            parts,
            client_id=principal.client_id,
            key_header=idempotency_key,
            required=True,
            status_code=201,
            work=lambda: service.refund(session, parts, principal, settlement_id, body.reason),
        ),
    )
