"""Real-name verification routes (partner apps) and the development SMS outbox (ops)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from identity.deps import OpsDep, PartnerDep, SessionDep, SettingsDep, StateDep
from identity.docs import problems
from identity.holders.fields import check_phone
from identity.timeutil import aware
from identity.verifications import service
from identity.verifications.schemas import (
    SmsOutbox,
    SmsOutboxItem,
    VerificationConfirm,
    VerificationConfirmed,
    VerificationCreate,
    VerificationCreated,
)
from identity.verifications.sms import outbox_for
from shared.fieldcrypto import mask_phone
from shared.problems import NotFoundError, UnprocessableError

router = APIRouter()


@router.post(
    "/v1/verifications",
    status_code=201,
    response_model=VerificationCreated,
    response_model_exclude_none=True,
    tags=["verification"],
    summary="Start a real-name verification (SMS code, or a face attestation)",
    responses=problems(
        401,
        403,
        422,
        429,
        s422="The details do not match a holder with an active card (one generic answer "
        "whichever detail is wrong), a field is malformed, or the face attestation is refused.",
    ),
)
async def start_verification(
    body: VerificationCreate, session: SessionDep, state: StateDep, caller: PartnerDep
) -> VerificationCreated:
    """Name, ID number, card number and phone must match a holder whose physical card is
    active; a six-digit code then goes to the phone on file (valid 5 minutes). With
    `face_attestation` (a JWT from a registered face provider for this ID number, liveness
    and match scores above the thresholds) the answer is `verified` at once and carries
    the `identity_assertion`. Rate-limited per app and per ID number (429, `Retry-After`)."""
    return await service.start(session, state, caller, body)


@router.post(
    "/v1/verifications/{verification_id}/confirm",
    response_model=VerificationConfirmed,
    tags=["verification"],
    summary="Confirm with the one-time code: the identity assertion",
    responses=problems(
        401,
        403,
        404,
        409,
        422,
        423,
        429,
        s404="No such verification (or another app's).",
        s409="Already confirmed.",
        s422="Wrong code (`attempts_remaining`), or the verification expired.",
        s423="Locked after five wrong codes.",
    ),
)
async def confirm_verification(
    verification_id: Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")],
    body: VerificationConfirm,
    session: SessionDep,
    state: StateDep,
    caller: PartnerDep,
) -> VerificationConfirmed:
    """The `identity_assertion` (audience issuance, subject an opaque holder reference, valid
    ≤ 5 minutes) works once, at `POST /v1/ecards`."""
    return await service.confirm(session, state, caller, verification_id, body.code)


@router.get(
    "/v1/admin/sms-outbox",
    response_model=SmsOutbox,
    tags=["operations"],
    summary="Codes the development SMS sender would have sent (not in production)",
    responses=problems(401, 403, 404, 422, s404="Not available in production."),
)
async def sms_outbox(
    phone: Annotated[str, Query(min_length=11, max_length=11)],
    session: SessionDep,
    state: StateDep,
    settings: SettingsDep,
    _ops: OpsDep,
) -> SmsOutbox:
    """Newest first, at most 20."""
    if settings.is_production:
        raise NotFoundError("No such resource.")
    try:
        check_phone(phone)
    except ValueError as exc:
        raise UnprocessableError(
            "Invalid phone.", errors=[{"field": "phone", "message": str(exc)}]
        ) from None
    rows = await outbox_for(session, state.data_keys, phone)
    return SmsOutbox(
        items=[
            SmsOutboxItem(
                phone=mask_phone(phone), text=r.text, code=r.code, sent_at=aware(r.sent_at)
            )
            for r in rows
        ]
    )
