"""Holder routes: ops' bulk import and issuance's internal profile lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from identity.deps import IssuanceDep, OpsDep, SessionDep, StateDep
from identity.docs import problems
from identity.holders import service
from identity.holders.schemas import HolderImport, HolderImportResult
from shared.wire import HolderProfile, PinCheckRequest, PinCheckResult

router = APIRouter()


@router.post(
    "/v1/admin/holders",
    response_model=HolderImportResult,
    tags=["operations"],
    summary="Import card holders and their physical cards (≤ 1000 per call)",
    responses=problems(401, 403, 409, 422),
)
async def import_holders(
    body: HolderImport, session: SessionDep, state: StateDep, ops: OpsDep
) -> HolderImportResult:
    """Idempotent by ID number: a holder seen before is updated (name, phone, region,
    insurance type), never duplicated. Each refused row is listed in `rejected` with its
    index and field errors and writes nothing; the other rows are stored. A new holder or a
    change emits a `holder.upserted` event (with `account_balance` as the opening balance)."""
    return await service.import_holders(session, state.data_keys, body.holders, actor=ops.client_id)


HolderRef = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9]+$")]


@router.post(
    "/internal/v1/holders/{holder_ref}/pin-check",
    response_model=PinCheckResult,
    tags=["internal"],
    summary="Does a proposed PIN occur in the holder's ID number? (issuance)",
    responses=problems(401, 403, 404, 422),
)
async def pin_check(
    holder_ref: HolderRef,
    body: PinCheckRequest,
    session: SessionDep,
    state: StateDep,
    _caller: IssuanceDep,
) -> PinCheckResult:
    """Issuance keeps only the masked ID number; the PIN rules forbid one taken from it."""
    return await service.pin_check(session, state.data_keys, holder_ref, body.pin)


@router.get(
    "/internal/v1/holders/{holder_ref}",
    response_model=HolderProfile,
    tags=["internal"],
    summary="A holder's masked profile and current card (issuance)",
    responses=problems(401, 403, 404),
)
async def holder_profile(
    holder_ref: HolderRef,
    session: SessionDep,
    state: StateDep,
    _caller: IssuanceDep,
) -> HolderProfile:
    """Masked values only; `card_ref` is the active card (or the latest one if none is)."""
    return await service.holder_profile(session, state.data_keys, holder_ref)
