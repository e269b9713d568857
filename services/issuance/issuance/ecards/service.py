"""E-card rules: issue from a one-use identity assertion, read, PIN, payment, suspend, unlink.

Raises the problems of :mod:`issuance.errors`; flushes, never commits.
"""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.context import ASSERTION_AUDIENCE, IssuanceContext
from issuance.ecards import lifecycle, repository
from issuance.ecards import pin as pins
from issuance.ecards.schemas import EcardRead, HolderRead
from issuance.errors import (
    AssertionInvalidError,
    AssertionUsedError,
    CardNotActiveError,
    EcardNotFoundError,
    EcardStateConflictError,
    PinIncorrectError,
    PinLockedError,
    PinNotSetError,
    PinRejectedError,
    PinRequiredError,
)
from issuance.models import Ecard
from issuance.times import as_utc, utcnow
from shared.db import after_commit
from shared.http import UpstreamProblemError
from shared.problems import ServiceUnavailableError
from shared.tokens.claims import (
    ECARD_CREDENTIAL,
    IDENTITY_ASSERTION,
    EcardCredentialClaims,
    IdentityAssertionClaims,
)
from shared.tokens.codec import InvalidTokenError, sign_token, verify_token_async
from shared.wire import CardStatus, EcardStatus, HolderProfile, PinCheckRequest, PinCheckResult

logger = logging.getLogger("issuance.ecards")

TABLE = "ecard"
CREDENTIAL_PURPOSE = "ecard-credential"


@dataclass(frozen=True)
class Issued:
    ecard: Ecard
    created: bool


def pairwise_id(ctx: IssuanceContext, holder_ref: str, client_id: str) -> str:
    """HMAC of the holder and app under the data keys: stable per app, unlinkable across apps."""
    digest = ctx.data_keys.index.digest(f"{holder_ref}|{client_id}", purpose="pairwise")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def decrypt(ctx: IssuanceContext, ecard: Ecard, column: str) -> str:
    blob: bytes = getattr(ecard, column + "_enc")
    return ctx.data_keys.cipher.decrypt(blob, table=TABLE, column=column, row=ecard.ecard_id)


def _encrypt(ctx: IssuanceContext, ecard_id: str, column: str, value: str) -> bytes:
    return ctx.data_keys.cipher.encrypt(value, table=TABLE, column=column, row=ecard_id)


def credential(ctx: IssuanceContext, ecard: Ecard) -> str:
    """A fresh ``ECARD_CREDENTIAL`` for the app that owns ``ecard``."""
    now = int(utcnow().timestamp())
    exp = min(
        now + ctx.settings.credential_lifetime_seconds, int(as_utc(ecard.valid_until).timestamp())
    )
    claims = EcardCredentialClaims(
        iss=ctx.settings.public_issuer,
        sub=ecard.pairwise_id,
        aud=ecard.partner_client_id,
        iat=now,
        exp=max(exp, now + 1),
        jti=secrets.token_urlsafe(16),
        ecard_id=ecard.ecard_id,
        sign_no=ecard.sign_no,
        sign_level=ecard.sign_level,
        region_code=ecard.region_code,
    )
    key = ctx.runtime.ring.signing_key(CREDENTIAL_PURPOSE)
    return sign_token(ECARD_CREDENTIAL, claims, key)


def to_read(ctx: IssuanceContext, ecard: Ecard) -> EcardRead:
    return EcardRead(
        ecard_id=ecard.ecard_id,
        sign_no=ecard.sign_no,
        sign_seq=ecard.sign_seq,
        sign_level=ecard.sign_level,
        status=EcardStatus(ecard.status),
        region_code=ecard.region_code,
        holder=HolderRead(
            pairwise_id=ecard.pairwise_id,
            name_masked=decrypt(ctx, ecard, "name_masked"),
            id_number_masked=decrypt(ctx, ecard, "id_number_masked"),
        ),
        issued_at=as_utc(ecard.issued_at),
        valid_until=as_utc(ecard.valid_until),
        pin_set=ecard.pin_hash is not None,
        payment_locked=ecard.pin_failures >= ctx.settings.pin_max_failures,
        credential=credential(ctx, ecard),
    )


async def new_sign_no(session: AsyncSession, region_code: str) -> str:
    """Region code + 12 random digits, unique among e-cards."""
    while True:
        candidate = region_code + "".join(secrets.choice("0123456789") for _ in range(12))
        if not await repository.sign_no_taken(session, candidate):
            return candidate


async def verify_assertion(
    ctx: IssuanceContext, token: str, client_id: str, *, field: str = "identity_assertion"
) -> IdentityAssertionClaims:
    """The assertion's claims if genuine, current, for issuance, and obtained by this app."""
    try:
        claims = await verify_token_async(
            token,
            IDENTITY_ASSERTION,
            keys=ctx.identity_jwks,
            issuer=ctx.settings.public_issuer,
            audience=ASSERTION_AUDIENCE,
        )
    except InvalidTokenError as exc:
        raise AssertionInvalidError(
            f"The identity assertion was rejected: {exc.reason}.",
            errors=[{"field": field, "message": exc.reason}],
        ) from None
    if claims.azp != client_id:
        raise AssertionInvalidError(
            "The identity assertion was obtained by another app.",
            errors=[{"field": field, "message": "issued to another app"}],
        )
    return claims


async def spend(session: AsyncSession, claims: IdentityAssertionClaims) -> None:
    expires = datetime.fromtimestamp(claims.exp, UTC)
    if not await repository.spend_assertion(session, claims.jti, expires):
        raise AssertionUsedError("This identity assertion was already used; verify again.")


async def holder_profile(ctx: IssuanceContext, holder_ref: str) -> HolderProfile:
    try:
        return await ctx.runtime.client("identity").call(
            "GET", f"/internal/v1/holders/{holder_ref}", HolderProfile
        )
    except UpstreamProblemError as exc:
        if exc.status == 404:
            raise AssertionInvalidError("The asserted holder is unknown.") from None
        raise


async def issue(
    session: AsyncSession, ctx: IssuanceContext, client_id: str, assertion: str
) -> Issued:
    """Issue (or return) this app's e-card for the asserted holder; spends the assertion.

    Raises AssertionInvalidError / AssertionUsedError (422), CardNotActiveError (409).
    """
    claims = await verify_assertion(ctx, assertion, client_id)
    await spend(session, claims)
    profile = await holder_profile(ctx, claims.sub)
    if profile.card_status is not CardStatus.ACTIVE:
        raise CardNotActiveError("The holder's physical card is not active.")
    link_key = f"{profile.holder_ref}|{client_id}"
    existing = await repository.get_by_link(session, link_key)
    if existing is not None:
        return Issued(existing, created=False)
    now = utcnow()
    ecard_id = "ec_" + secrets.token_urlsafe(18)
    ecard = Ecard(
        ecard_id=ecard_id,
        partner_client_id=client_id,
        holder_ref=profile.holder_ref,
        link_key=link_key,
        pairwise_id=pairwise_id(ctx, profile.holder_ref, client_id),
        card_ref=profile.card_ref,
        sign_no=await new_sign_no(session, profile.card_region),
        sign_seq=1,
        sign_level=1,
        status=EcardStatus.ACTIVE.value,
        app_suspended=False,
        card_state=lifecycle.CARD_ACTIVE,
        region_code=profile.card_region,
        insured_region=profile.insured_region,
        insurance_type=profile.insurance_type.value,
        gender=profile.gender,
        birth_date_enc=_encrypt(ctx, ecard_id, "birth_date", profile.birth_date.isoformat()),
        name_masked_enc=_encrypt(ctx, ecard_id, "name_masked", profile.name_masked),
        id_number_masked_enc=_encrypt(ctx, ecard_id, "id_number_masked", profile.id_number_masked),
        pin_hash=None,
        pin_failures=0,
        qr_not_before=0,
        issued_at=now,
        valid_until=now + timedelta(days=ctx.settings.ecard_validity_days),
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(ecard)
            await session.flush()
    except IntegrityError:
        # The same holder through the same app, concurrently: the other request won.
        winner = await repository.get_by_link(session, link_key)
        if winner is None:
            raise
        return Issued(winner, created=False)
    after_commit(session, ctx.metrics.ecards_issued.labels(ecard.region_code).inc)
    return Issued(ecard, created=True)


async def get_owned(
    session: AsyncSession, ecard_id: str, client_id: str, *, for_update: bool = False
) -> Ecard:
    """The app's linked e-card, else 404 (also for another app's e-card)."""
    ecard = await repository.get_linked(session, ecard_id, client_id, for_update=for_update)
    if ecard is None:
        raise EcardNotFoundError("No such e-card.")
    return ecard


async def check_pin(
    session: AsyncSession,
    ctx: IssuanceContext,
    seq: int,
    pin_hash: str | None,
    pin: str,
    *,
    field: str = "pin",
) -> None:
    """Verify ``pin`` against an e-card's PIN, counting the attempt (5 wrong → 423 lock).

    Never call it while holding the e-card's row lock: the attempt is counted in a
    transaction of its own, which would wait for that lock.
    """
    if pin_hash is None:
        raise PinNotSetError("Set a PIN first.")
    limit = ctx.settings.pin_max_failures
    counted = await repository.claim_pin_attempt(ctx.runtime.db, seq, limit)
    if counted is None:
        raise PinLockedError("Payment is locked after too many wrong PINs; reset the PIN.")
    if await pins.verify_pin(pin, pin_hash, ctx.kdf):
        await repository.reset_pin_attempts(session, seq)
        return
    if counted >= limit:
        raise PinLockedError("Wrong PIN; payment is now locked. Reset the PIN to unlock.")
    raise PinIncorrectError(
        f"Wrong PIN; {limit - counted} attempts left.",
        errors=[{"field": field, "message": "incorrect"}],
        extra={"attempts_left": limit - counted},
    )


async def _pin_in_id_number(ctx: IssuanceContext, holder_ref: str, pin: str) -> bool:
    """Ask identity (which holds the ID number) whether ``pin`` occurs in it.

    Fails closed: if identity cannot answer, no PIN is set (503), since a PIN taken from
    the ID number is exactly what the rule forbids.
    """
    try:
        result = await ctx.runtime.client("identity").call(
            "POST",
            f"/internal/v1/holders/{holder_ref}/pin-check",
            PinCheckResult,
            json=PinCheckRequest(pin=pin).model_dump(),
        )
    except UpstreamProblemError:
        if not ctx.settings.pin_id_check_required:
            logger.warning("PIN set without identity's ID-number check (not required here)")
            return False
        raise ServiceUnavailableError(
            "The PIN cannot be checked against the ID number right now; retry later.",
            headers={"Retry-After": "5"},
        ) from None
    return result.contained


async def set_pin(
    session: AsyncSession,
    ctx: IssuanceContext,
    ecard: Ecard,
    pin: str,
    old_pin: str | None,
    assertion: str | None,
) -> None:
    """Set, change or (with a fresh identity assertion) reset the PIN; lifts a lock on reset."""
    pins.check_pin_shape(pin)
    if ecard.pin_hash is not None:
        if assertion is not None:
            claims = await verify_assertion(ctx, assertion, ecard.partner_client_id)
            if claims.sub != ecard.holder_ref:
                raise AssertionInvalidError("The identity assertion is for another holder.")
            await spend(session, claims)
        elif old_pin is None:
            raise PinRequiredError("The current PIN is required to change it.", field="old_pin")
        else:
            await check_pin(session, ctx, ecard.seq, ecard.pin_hash, old_pin, field="old_pin")
    if await _pin_in_id_number(ctx, ecard.holder_ref, pin):
        raise PinRejectedError("The PIN must not be taken from the ID number.")
    ecard.pin_hash = await pins.hash_pin(pin, ctx.settings.pin_scrypt_log2_n, ctx.kdf)
    ecard.updated_at = utcnow()
    await session.flush()
    await repository.reset_pin_attempts(session, ecard.seq)
    ecard.pin_failures = 0


async def enable_payment(
    session: AsyncSession, ctx: IssuanceContext, ecard: Ecard, pin: str
) -> Ecard:
    """Level 2 after a correct PIN; the e-card must be active."""
    if ecard.status != EcardStatus.ACTIVE.value:
        raise EcardStateConflictError("Only an active e-card can enable payment.")
    await check_pin(session, ctx, ecard.seq, ecard.pin_hash, pin)
    ecard.pin_failures = 0
    ecard.sign_level = 2
    ecard.updated_at = utcnow()
    await session.flush()
    return ecard


async def set_app_suspended(session: AsyncSession, ecard: Ecard, suspended: bool) -> Ecard:
    """The app's suspend/resume; a card-level suspension or revocation stays in force."""
    if ecard.status == EcardStatus.REVOKED.value:
        raise EcardStateConflictError("The e-card is revoked.")
    ecard.app_suspended = suspended
    lifecycle.refresh(session, ecard, now=utcnow(), reason="app")
    await session.flush()
    return ecard


async def unlink(session: AsyncSession, ecard: Ecard) -> None:
    """Drop the app's link: the credential and every QR code of this e-card stop working."""
    now = utcnow()
    ecard.link_key = None
    ecard.unlinked_at = now
    ecard.qr_not_before = int(now.timestamp()) + 1
    lifecycle.refresh(session, ecard, now=now, reason="app")
    await session.flush()
