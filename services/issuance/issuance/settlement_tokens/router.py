"""Internal routes the settlement service calls (its own service token only)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from issuance.deps import ContextDep, SessionDep, SettlementService
from issuance.settlement_tokens import service
from shared.validation import IdPath
from shared.wire import EcardRef, SettlementTokenInfo, SettlementTokenRedeem, SettlementTokenResolve

router = APIRouter(prefix="/internal/v1", include_in_schema=False)


@router.post("/settlement-tokens/resolve", response_model=SettlementTokenInfo)
async def resolve(
    body: SettlementTokenResolve, ctx: ContextDep, _: SettlementService
) -> SettlementTokenInfo:
    return await service.resolve(ctx, body.settlement_token, body.hospital_client_id)


@router.post("/settlement-tokens/redeem", response_model=SettlementTokenInfo)
async def redeem(
    body: SettlementTokenRedeem, ctx: ContextDep, _: SettlementService
) -> SettlementTokenInfo:
    return await service.redeem(
        ctx, body.settlement_token, body.hospital_client_id, body.redemption_ref
    )


@router.get("/ecards/{ecard_id}", response_model=EcardRef)
async def ecard_ref(
    ecard_id: IdPath,
    session: SessionDep,
    _: SettlementService,
    client_id: str = Query(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"),
) -> EcardRef:
    return await service.ecard_ref(session, ecard_id, client_id)
