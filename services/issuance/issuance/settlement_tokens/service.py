"""Settlement tokens for the settlement service: resolve without spending, redeem exactly once.

Unknown, expired or another hospital's token → 404 ``settlement-token-invalid`` (no hint
which). Redemption is one conditional UPDATE; the same ``redemption_ref`` again gets the
same answer (a settlement retried after a crash), another ref gets 409.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from issuance.context import IssuanceContext
from issuance.ecards import repository as ecard_repository
from issuance.ecards import service as ecard_service
from issuance.errors import (
    EcardNotActiveError,
    EcardNotFoundError,
    SettlementTokenInvalidError,
    SettlementTokenUsedError,
)
from issuance.models import Ecard, SettlementToken
from issuance.scans.service import settlement_token_hash
from issuance.settlement_tokens import repository
from issuance.times import as_utc, utcnow
from shared.wire import EcardRef, EcardStatus, InsuranceType, SettlementTokenInfo

_INVALID = "Unknown, expired or not this hospital's settlement token."


def _info(ctx: IssuanceContext, token: SettlementToken, ecard: Ecard) -> SettlementTokenInfo:
    birth = ecard_service.decrypt(ctx, ecard, "birth_date")
    return SettlementTokenInfo(
        ecard_id=ecard.ecard_id,
        scan_id=token.scan_id,
        holder_ref=ecard.holder_ref,
        partner_client_id=ecard.partner_client_id,
        hospital_client_id=token.hospital_client_id,
        insured_region=ecard.insured_region,
        insurance_type=InsuranceType(ecard.insurance_type),
        birth_date=date.fromisoformat(birth),
        gender="female" if ecard.gender == "female" else "male",
        sign_level=ecard.sign_level,
        ecard_status=EcardStatus(ecard.status),
        expires_at=as_utc(token.expires_at),
        redeemed_at=as_utc(token.redeemed_at) if token.redeemed_at else None,
        redemption_ref=token.redemption_ref,
    )


async def resolve(
    session: AsyncSession, ctx: IssuanceContext, token: str, hospital: str
) -> SettlementTokenInfo:
    found = await repository.with_ecard(session, settlement_token_hash(token))
    if found is None:
        raise SettlementTokenInvalidError(_INVALID)
    row, ecard = found
    if row.hospital_client_id != hospital or as_utc(row.expires_at) <= utcnow():
        raise SettlementTokenInvalidError(_INVALID)
    return _info(ctx, row, ecard)


async def redeem(
    session: AsyncSession, ctx: IssuanceContext, token: str, hospital: str, ref: str
) -> SettlementTokenInfo:
    """Spend the token once for ``ref``; raises 404 invalid, 409 used, 403 e-card not active."""
    token_hash = settlement_token_hash(token)
    found = await repository.with_ecard(session, token_hash)
    if found is None or found[0].hospital_client_id != hospital:
        raise SettlementTokenInvalidError(_INVALID)
    row, ecard = found
    if row.redeemed_at is not None:
        if row.redemption_ref == ref:
            return _info(ctx, row, ecard)
        raise SettlementTokenUsedError("This settlement token was already used.")
    if ecard.status != EcardStatus.ACTIVE.value:
        raise EcardNotActiveError(f"The e-card is {ecard.status}.")
    now = utcnow()
    if not await repository.redeem(session, token_hash, hospital, ref, now):
        # Expired, or a concurrent redemption committed first: look again to tell which.
        await session.refresh(row)
        if row.redeemed_at is not None:
            if row.redemption_ref == ref:
                return _info(ctx, row, ecard)
            raise SettlementTokenUsedError("This settlement token was already used.")
        raise SettlementTokenInvalidError(_INVALID)
    await session.refresh(row)
    return _info(ctx, row, ecard)


async def ecard_ref(session: AsyncSession, ecard_id: str, client_id: str) -> EcardRef:
    """The e-card if it is ``client_id``'s (linked or not), else 404."""
    ecard = await ecard_repository.get_by_id(session, ecard_id)
    if ecard is None or ecard.partner_client_id != client_id:
        raise EcardNotFoundError("No such e-card for this app.")
    return EcardRef(
        ecard_id=ecard.ecard_id,
        holder_ref=ecard.holder_ref,
        partner_client_id=ecard.partner_client_id,
        status=EcardStatus(ecard.status),
        insured_region=ecard.insured_region,
    )
