"""Scanning: verify a QR token, check the e-card now, spend the code once, answer the holder.

Status is read from the database on every scan (no process-local cache), so a suspension
or revocation committed by any replica stops the next scan everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta

from issuance.context import IssuanceContext
from issuance.errors import (
    EcardNotActiveError,
    QrAlreadyUsedError,
    QrExpiredError,
    QrInvalidError,
)
from issuance.scans import repository
from issuance.scans.schemas import ScanHolder, ScanRead
from issuance.times import utcnow
from shared.tokens.claims import ClientKind, InternalTokenClaims
from shared.tokens.qr import (
    ExpiredQrTokenError,
    InvalidQrTokenError,
    QrClaims,
    QrPurpose,
    verify_qr_token,
)
from shared.wire import EcardStatus

TABLE = "ecard"


def settlement_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _verify(ctx: IssuanceContext, qr_token: str) -> QrClaims:
    count = ctx.metrics.qr_scans
    try:
        return verify_qr_token(
            qr_token,
            ring=ctx.runtime.ring,
            now=int(time.time()),
            leeway=ctx.settings.qr_leeway_seconds,
        )
    except ExpiredQrTokenError:
        count.labels("expired").inc()
        raise QrExpiredError("The QR code has expired; ask for a fresh one.") from None
    except InvalidQrTokenError:
        count.labels("invalid").inc()
        raise QrInvalidError("The QR code is not a valid e-SSC code.") from None


async def scan(
    ctx: IssuanceContext,
    principal: InternalTokenClaims,
    qr_token: str,
    purpose: str,
) -> ScanRead:
    """Redeem one QR code, in one transaction.

    Raises QrInvalidError / QrExpiredError (422), EcardNotActiveError (403),
    QrAlreadyUsedError (409). Side effects: the scan row (spends the jti) and, for a
    hospital scanning a payment code for settlement, a settlement token (hash stored).
    """
    claims = _verify(ctx, qr_token)
    count = ctx.metrics.qr_scans
    async with ctx.hotdb.transaction() as tx:
        row = await repository.ecard_for_scan(tx, claims.ecard_seq)
        if row is None:
            count.labels("invalid").inc()
            raise QrInvalidError("The QR code is not a valid e-SSC code.")
        if row["status"] != EcardStatus.ACTIVE.value:
            count.labels("not_active").inc()
            raise EcardNotActiveError(f"The e-card is {row['status']}.")
        if claims.iat < row["qr_not_before"]:
            count.labels("expired").inc()
            raise QrExpiredError("The QR code was superseded; ask for a fresh one.")
        now = utcnow()
        scan_id = "sc_" + secrets.token_urlsafe(18)
        expires_at = datetime.fromtimestamp(claims.exp, UTC)
        values = {
            "scan_id": scan_id,
            "jti": claims.jti,
            "seq": row["seq"],
            "client": principal.client_id,
            "purpose": purpose,
            "qr_purpose": "payment" if claims.purpose is QrPurpose.PAYMENT else "identity",
            "qr_expires_at": expires_at,
            "now": now,
        }
        if not await repository.claim(tx, values):
            count.labels("already_used").inc()
            raise QrAlreadyUsedError("This QR code was already used.")
        settlement_token: str | None = None
        if (
            principal.kind is ClientKind.HOSPITAL
            and purpose == "settlement"
            and claims.purpose is QrPurpose.PAYMENT
            and row["sign_level"] >= 2
        ):
            settlement_token = secrets.token_urlsafe(30)
            expires_at = now + timedelta(seconds=ctx.settings.settlement_token_seconds)
            await repository.add_settlement_token(
                tx,
                {
                    "hash": settlement_token_hash(settlement_token),
                    "scan_id": scan_id,
                    "seq": row["seq"],
                    "client": principal.client_id,
                    "expires_at": expires_at,
                    "now": now,
                },
            )
    cipher = ctx.data_keys.cipher
    ecard_id = str(row["ecard_id"])
    count.labels("success").inc()
    return ScanRead(
        scan_id=scan_id,
        holder=ScanHolder(
            name_masked=cipher.decrypt(
                bytes(row["name_masked_enc"]), table=TABLE, column="name_masked", row=ecard_id
            ),
            id_number_masked=cipher.decrypt(
                bytes(row["id_number_masked_enc"]),
                table=TABLE,
                column="id_number_masked",
                row=ecard_id,
            ),
            gender=row["gender"],
            insured_region=row["insured_region"],
            card_status=EcardStatus(row["status"]),
        ),
        sign_level=row["sign_level"],
        settlement_token=settlement_token,
        expires_at=expires_at,
    )
