"""Real-name verification: match the details, send a one-time code, sign the identity assertion.

A mismatch answers the same problem whichever detail was wrong, and every path
does the same work: one indexed lookup by the ID number's blind index, two
decryptions (of a decoy when no holder matched) and constant-time comparisons
of all four details. The code is kept only as an HMAC; five wrong codes lock
the verification. Failed attempts are counted in their own transaction, so the
request's rollback cannot undo them.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from identity.errors import (
    DetailsMismatchError,
    OtpInvalidError,
    VerificationDoneError,
    VerificationExpiredError,
    VerificationLockedError,
    VerificationNotFoundError,
)
from identity.holders import crypto
from identity.holders import repository as holders_repo
from identity.state import IdentityState
from identity.timeutil import aware
from identity.timeutil import now as utcnow
from identity.verifications import repository as repo
from identity.verifications.face import check_attestation
from identity.verifications.schemas import (
    VerificationConfirmed,
    VerificationCreate,
    VerificationCreated,
)
from shared.tokens.claims import IDENTITY_ASSERTION, IdentityAssertionClaims, InternalTokenClaims
from shared.tokens.codec import sign_token

ISSUANCE_AUDIENCE = "urn:essc:issuance"
ASSERTION_PURPOSE = "identity-assertion"


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def match_holder(
    session: AsyncSession, state: IdentityState, body: VerificationCreate
) -> str | None:
    """The holder_ref if all four details match a holder with an active card, else None."""
    keys = state.data_keys
    row = await holders_repo.holder_with_active_card(session, crypto.id_index(keys, body.id_number))
    if row is not None:
        ref, name_enc, phone_enc, card_number = (
            row.holder_ref,
            row.name_enc,
            row.phone_enc,
            row.card_number or "",
        )
    else:
        ref, name_enc, phone_enc = state.decoy
        card_number = ""
    name = crypto.open_field(keys, ref, "name", name_enc)
    phone = crypto.open_field(keys, ref, "phone", phone_enc)
    results = (
        row is not None,
        _eq(name, body.name),
        _eq(phone, body.phone),
        _eq(card_number, body.card_number),
    )
    return ref if all(results) else None


def sign_assertion(
    state: IdentityState, holder_ref: str, client_id: str, method: str
) -> tuple[str, int]:
    """A one-use identity assertion for issuance; returns (token, exp)."""
    iat = int(utcnow().timestamp())
    exp = iat + state.settings.identity_assertion_ttl_seconds
    claims = IdentityAssertionClaims(
        iss=state.settings.public_issuer,
        sub=holder_ref,
        aud=ISSUANCE_AUDIENCE,
        iat=iat,
        exp=exp,
        jti=secrets.token_urlsafe(18),
        azp=client_id,
        method=method,
    )
    key = state.runtime.ring.signing_key(ASSERTION_PURPOSE)
    return sign_token(IDENTITY_ASSERTION, claims, key), exp


def _otp_hash(state: IdentityState, verification_id: str, code: str) -> bytes:
    return state.data_keys.index.digest(f"{verification_id}:{code}", purpose="otp")


async def start(
    session: AsyncSession,
    state: IdentityState,
    caller: InternalTokenClaims,
    body: VerificationCreate,
) -> VerificationCreated:
    """Match the details and send a code (201 pending), or verify at once with a face
    attestation (201 verified). 422 mismatch (one generic answer) or rejected attestation;
    429 over the per-client or per-ID-number limit."""
    keys = state.data_keys
    await state.limiter.hit("verify-client", caller.client_id)
    await state.limiter.hit("verify-id", crypto.id_index(keys, body.id_number).hex()[:32])
    if body.face_attestation is not None:
        await check_attestation(session, state, body.face_attestation, body.id_number)
    holder_ref = await match_holder(session, state, body)
    if holder_ref is None:
        raise DetailsMismatchError()
    ts = utcnow()
    verification_id = "vrf_" + secrets.token_hex(12)
    if body.face_attestation is not None:
        token, exp = sign_assertion(state, holder_ref, caller.client_id, "face")
        await repo.add(
            session,
            {
                "verification_id": verification_id,
                "client_id": caller.client_id,
                "holder_ref": holder_ref,
                "method": "face",
                "status": "verified",
                "otp_hash": None,
                "attempts": 0,
                "created_at": ts,
                "expires_at": ts + timedelta(seconds=state.settings.identity_assertion_ttl_seconds),
                "verified_at": ts,
            },
        )
        return VerificationCreated(
            verification_id=verification_id,
            status="verified",
            method="face",
            expires_at=ts + timedelta(seconds=exp - int(ts.timestamp())),
            identity_assertion=token,
        )
    code = f"{secrets.randbelow(1_000_000):06d}"
    expires = ts + timedelta(seconds=state.settings.otp_ttl_seconds)
    await repo.add(
        session,
        {
            "verification_id": verification_id,
            "client_id": caller.client_id,
            "holder_ref": holder_ref,
            "method": "sms_otp",
            "status": "pending",
            "otp_hash": _otp_hash(state, verification_id, code),
            "attempts": 0,
            "created_at": ts,
            "expires_at": expires,
        },
    )
    minutes = state.settings.otp_ttl_seconds // 60
    await state.sms.send(
        session,
        phone=body.phone,
        text=f"【e-SSC】Your verification code is {code}. It expires in {minutes} minutes.",
        code=code,
    )
    return VerificationCreated(
        verification_id=verification_id, status="pending", method="sms_otp", expires_at=expires
    )


async def _count_failure(state: IdentityState, verification_id: str) -> tuple[int, str] | None:
    """Count a wrong code in a transaction of its own (it must survive the error answer)."""
    async with state.runtime.db.sessionmaker() as own:
        result = await repo.count_failure(own, verification_id, state.settings.otp_max_attempts)
        await own.commit()
    return result


async def confirm(
    session: AsyncSession,
    state: IdentityState,
    caller: InternalTokenClaims,
    verification_id: str,
    code: str,
) -> VerificationConfirmed:
    """Check the code: 200 with the identity assertion. 404 unknown or another app's;
    409 already confirmed; 422 wrong code or expired; 423 locked (five wrong codes)."""
    await state.limiter.hit("confirm-client", caller.client_id)
    found = await repo.get_for_client(session, verification_id, caller.client_id)
    if found is None:
        raise VerificationNotFoundError("No such verification.")
    if found.status == "locked":
        raise VerificationLockedError("Too many wrong codes; start a new verification.")
    if found.status == "verified":
        raise VerificationDoneError("This verification was already confirmed.")
    ts = utcnow()
    if ts >= aware(found.expires_at):
        raise VerificationExpiredError("The code has expired; start a new verification.")
    expected = found.otp_hash or b""
    if not hmac.compare_digest(_otp_hash(state, verification_id, code), expected):
        counted = await _count_failure(state, verification_id)
        if counted is None or counted[1] == "locked":
            raise VerificationLockedError("Too many wrong codes; start a new verification.")
        remaining = state.settings.otp_max_attempts - counted[0]
        raise OtpInvalidError(
            "The code is wrong.",
            errors=[{"field": "code", "message": "wrong code"}],
            extra={"attempts_remaining": remaining},
        )
    if not await repo.mark_verified(session, verification_id, state.settings.otp_max_attempts, ts):
        raise VerificationDoneError("This verification is no longer pending.")
    token, exp = sign_assertion(state, found.holder_ref, caller.client_id, "sms_otp")
    return VerificationConfirmed(
        identity_assertion=token, expires_at=ts + timedelta(seconds=exp - int(ts.timestamp()))
    )
