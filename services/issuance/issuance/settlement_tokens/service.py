"""Settlement tokens for the settlement service: resolve without spending, redeem exactly once.

Unknown, expired or another hospital's token → 404 ``settlement-token-invalid`` (no hint
which). Redemption is one conditional UPDATE; the same ``redemption_ref`` again gets the
same answer (a settlement retried after a crash), another ref gets 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from issuance.context import IssuanceContext
from issuance.ecards import repository as ecard_repository
from issuance.ecards.service import TABLE
from issuance.errors import (
    EcardNotActiveError,
    EcardNotFoundError,
    SettlementTokenInvalidError,
    SettlementTokenUsedError,
)
from issuance.scans.service import settlement_token_hash
from issuance.settlement_tokens import repository
from issuance.times import as_utc, utcnow
from shared.wire import EcardRef, EcardStatus, InsuranceType, SettlementTokenInfo

_INVALID = "Unknown, expired or not this hospital's settlement token."
_USED = "This settlement token was already used."


def _ts(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite's text() hands back a string)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


def _info(
    ctx: IssuanceContext,
    row: Mapping[str, Any],
    redeemed_at: Any = None,
    redemption_ref: str | None = None,
) -> SettlementTokenInfo:
    ecard_id = str(row["ecard_id"])
    birth = ctx.data_keys.cipher.decrypt(
        bytes(row["birth_date_enc"]), table=TABLE, column="birth_date", row=ecard_id
    )
    return SettlementTokenInfo(
        ecard_id=ecard_id,
        scan_id=row["scan_id"],
        holder_ref=row["holder_ref"],
        partner_client_id=row["partner_client_id"],
        hospital_client_id=row["hospital_client_id"],
        insured_region=row["insured_region"],
        insurance_type=InsuranceType(row["insurance_type"]),
        birth_date=date.fromisoformat(birth),
        gender="female" if row["gender"] == "female" else "male",
        sign_level=row["sign_level"],
        ecard_status=EcardStatus(row["status"]),
        expires_at=_ts(row["expires_at"]),
        redeemed_at=_ts(redeemed_at) if redeemed_at else None,
        redemption_ref=redemption_ref,
    )


def _live(row: Mapping[str, Any] | None, hospital: str) -> Mapping[str, Any]:
    if row is None or row["hospital_client_id"] != hospital or _ts(row["expires_at"]) <= utcnow():
        raise SettlementTokenInvalidError(_INVALID)
    return row


async def resolve(ctx: IssuanceContext, token: str, hospital: str) -> SettlementTokenInfo:
    """The token's e-card and holder facts, without spending it (the quote)."""
    row = _live(await repository.with_ecard(ctx.hotdb, settlement_token_hash(token)), hospital)
    return _info(ctx, row, row["redeemed_at"], row["redemption_ref"])


async def redeem(ctx: IssuanceContext, token: str, hospital: str, ref: str) -> SettlementTokenInfo:
    """Spend the token once for ``ref``; raises 404 invalid, 409 used, 403 e-card not active.

    The same ``ref`` again gets the same answer (a settlement retried after a crash), even
    after the token's expiry.
    """
    token_hash = settlement_token_hash(token)
    async with ctx.hotdb.transaction() as tx:
        row = await repository.with_ecard(tx, token_hash)
        if row is None or row["hospital_client_id"] != hospital:
            raise SettlementTokenInvalidError(_INVALID)
        if row["redeemed_at"] is not None:
            if row["redemption_ref"] == ref:
                return _info(ctx, row, row["redeemed_at"], ref)
            raise SettlementTokenUsedError(_USED)
        _live(row, hospital)
        if row["status"] != EcardStatus.ACTIVE.value:
            raise EcardNotActiveError(f"The e-card is {row['status']}.")
        now = utcnow()
        if await repository.redeem(tx, token_hash, hospital, ref, now):
            return _info(ctx, row, now, ref)
        # A concurrent redemption committed first: the same ref gets its answer, another 409.
        again = await repository.redemption(tx, token_hash)
    if again is not None and again["redemption_ref"] == ref:
        return _info(ctx, row, again["redeemed_at"], ref)
    raise SettlementTokenUsedError(_USED)


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
