"""Self-service enquiry (partner apps), the e-card page summary (issuance), top-ups (ops)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from settlement import idempotent, peers
from settlement.accounts import service
from settlement.accounts.schemas import AccountRead, HolderSettlementPage, TopUpCreate, TopUpRead
from settlement.db import SessionDep
from settlement.deps import IssuanceCaller, Operator, PartnerEnquiry, PartsDep, RuntimeDep
from shared.validation import IdPath
from shared.wire import HolderAccountSummary

router = APIRouter(tags=["holder self-service"])
internal = APIRouter(include_in_schema=False)
admin = APIRouter(tags=["operations"])

EcardId = IdPath
HolderRef = IdPath


@router.get("/v1/ecards/{ecard_id}/account", response_model=AccountRead)
async def get_account(
    ecard_id: EcardId,
    session: SessionDep,
    runtime: RuntimeDep,
    parts: PartsDep,
    principal: PartnerEnquiry,
) -> AccountRead:
    """The balance, this year's deductible used, fund paid and cap remaining (own e-cards)."""
    ref = await peers.ecard_ref(runtime, ecard_id, principal.client_id)
    return await service.account(session, parts, ecard_id, ref.holder_ref, ref.insured_region)


@router.get("/v1/ecards/{ecard_id}/settlements", response_model=HolderSettlementPage)
async def list_settlements(
    ecard_id: EcardId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: PartnerEnquiry,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HolderSettlementPage:
    """The holder's settlements, newest first (``next_cursor`` fetches the next page)."""
    ref = await peers.ecard_ref(runtime, ecard_id, principal.client_id)
    return await service.settlements(session, ref.holder_ref, cursor=cursor, limit=limit)


@internal.get("/internal/v1/holders/{holder_ref}/summary", response_model=HolderAccountSummary)
async def holder_summary(
    holder_ref: HolderRef,
    session: SessionDep,
    parts: PartsDep,
    _caller: IssuanceCaller,
    limit: Annotated[int, Query(ge=0, le=50)] = 5,
) -> HolderAccountSummary:
    """For issuance's e-card web page: balance, this year's totals, recent settlements."""
    return await service.summary(session, parts, holder_ref, limit)


@admin.post("/v1/admin/holders/{holder_ref}/top-ups", status_code=201, response_model=TopUpRead)
async def top_up(
    holder_ref: HolderRef,
    body: TopUpCreate,
    request: Request,
    session: SessionDep,
    parts: PartsDep,
    caller: Operator,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Credit a personal account from the region's funding account (once per reference)."""
    return await idempotent.run(
        request,
        session,
        parts,
        client_id=caller.client_id,
        key_header=idempotency_key,
        required=False,
        status_code=201,
        work=lambda: service.top_up(session, holder_ref, body, parts.now()),
    )
