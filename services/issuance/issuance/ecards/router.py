"""E-card routes for partner apps (API.md "E-cards"): thin, one service call each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from issuance.deps import ContextDep, IssuePrincipal, ManagePrincipal, SessionDep
from issuance.ecards import service
from issuance.ecards.schemas import EcardCreate, EcardRead, PaymentEnable, PinUpdate
from shared.validation import IdPath

router = APIRouter(prefix="/v1/ecards", tags=["E-cards"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such e-card for this app (also another app's)."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EcardRead,
    responses={
        200: {"description": "This holder already has this app's e-card.", "model": EcardRead},
        409: {"description": "The physical card is not active."},
        422: {"description": "Assertion invalid, expired, of another app or already used."},
    },
)
async def issue_ecard(
    body: EcardCreate,
    response: Response,
    session: SessionDep,
    ctx: ContextDep,
    principal: IssuePrincipal,
) -> EcardRead:
    """Issue the holder's e-card in this app from a one-use identity assertion."""
    issued = await service.issue(session, ctx, principal.client_id, body.identity_assertion)
    if not issued.created:
        response.status_code = status.HTTP_200_OK
    return service.to_read(ctx, issued.ecard)


@router.get("/{ecard_id}", response_model=EcardRead, responses=_NOT_FOUND)
async def get_ecard(
    ecard_id: IdPath, session: SessionDep, ctx: ContextDep, principal: ManagePrincipal
) -> EcardRead:
    ecard = await service.get_owned(session, ecard_id, principal.client_id)
    return service.to_read(ctx, ecard)


@router.put(
    "/{ecard_id}/pin",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_NOT_FOUND,
        422: {"description": "PIN breaks a rule or old PIN wrong."},
        423: {"description": "Locked after five wrong old PINs (reset with an assertion)."},
    },
)
async def set_pin(
    ecard_id: IdPath,
    body: PinUpdate,
    session: SessionDep,
    ctx: ContextDep,
    principal: ManagePrincipal,
) -> Response:
    """Six digits; not a run, not one repeated digit, not contained in the ID number."""
    ecard = await service.get_owned(session, ecard_id, principal.client_id)
    await service.set_pin(session, ctx, ecard, body.pin, body.old_pin, body.identity_assertion)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{ecard_id}/payment",
    response_model=EcardRead,
    responses={**_NOT_FOUND, 423: {"description": "Locked after five wrong PINs."}},
)
async def enable_payment(
    ecard_id: IdPath,
    body: PaymentEnable,
    session: SessionDep,
    ctx: ContextDep,
    principal: ManagePrincipal,
) -> EcardRead:
    """Enable payment and settlement (sign level 2) with the PIN."""
    ecard = await service.get_owned(session, ecard_id, principal.client_id)
    await service.enable_payment(session, ctx, ecard, body.pin)
    return service.to_read(ctx, ecard)


@router.post("/{ecard_id}/suspend", response_model=EcardRead, responses=_NOT_FOUND)
async def suspend(
    ecard_id: IdPath, session: SessionDep, ctx: ContextDep, principal: ManagePrincipal
) -> EcardRead:
    """Suspend the e-card in this app (the holder lost the phone)."""
    ecard = await service.get_owned(session, ecard_id, principal.client_id, for_update=True)
    await service.set_app_suspended(session, ecard, True)
    ctx.relay_wakeup.set()
    return service.to_read(ctx, ecard)


@router.post("/{ecard_id}/resume", response_model=EcardRead, responses=_NOT_FOUND)
async def resume(
    ecard_id: IdPath, session: SessionDep, ctx: ContextDep, principal: ManagePrincipal
) -> EcardRead:
    """Lift this app's suspension (a suspension of the physical card stays)."""
    ecard = await service.get_owned(session, ecard_id, principal.client_id, for_update=True)
    await service.set_app_suspended(session, ecard, False)
    ctx.relay_wakeup.set()
    return service.to_read(ctx, ecard)


@router.delete("/{ecard_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def unlink(ecard_id: IdPath, session: SessionDep, principal: ManagePrincipal) -> Response:
    """Unlink: this app's credential and QR codes stop working; other apps are unaffected."""
    ecard = await service.get_owned(session, ecard_id, principal.client_id, for_update=True)
    await service.unlink(session, ecard)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
