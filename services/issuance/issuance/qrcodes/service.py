"""QR issuance: a fresh one-time QR token (and image) for an active e-card of the calling app.

No database write: single use is enforced where the code is redeemed (the scan). Payment
codes need sign level 2 and the PIN. A per-e-card cap limits how many codes are made.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Literal

from issuance.context import IssuanceContext
from issuance.ecards import service as ecard_service
from issuance.errors import (
    EcardNotActiveError,
    EcardNotFoundError,
    PaymentNotEnabledError,
    PinRequiredError,
)
from issuance.qrcodes import render, repository
from issuance.qrcodes.schemas import QrFormat, QrRead
from shared.problems import RateLimitedError
from shared.tokens.qr import QR_KEY_PURPOSE, QrPurpose, issue_qr_token
from shared.wire import EcardStatus

Purpose = Literal["identity", "payment"]
_PURPOSES = {"identity": QrPurpose.IDENTITY, "payment": QrPurpose.PAYMENT}


def make_token(ctx: IssuanceContext, seq: int, purpose: Purpose) -> QrRead:
    """Sign a QR token for e-card ``seq`` (no checks: callers check status and rights)."""
    settings = ctx.settings
    lifetime = settings.qr_lifetime_seconds
    iat = int(time.time())
    token, claims = issue_qr_token(
        ctx.runtime.ring.signing_key(QR_KEY_PURPOSE),
        purpose=_PURPOSES[purpose],
        ecard_seq=seq,
        iat=iat,
        lifetime=lifetime,
    )
    refresh_in = max(1, lifetime - min(settings.qr_refresh_margin_seconds, lifetime // 2))
    ctx.metrics.qr_issued.labels(purpose).inc()
    return QrRead(
        qr_token=token,
        purpose=purpose,
        expires_at=datetime.fromtimestamp(claims.exp, UTC),
        refresh_at=datetime.fromtimestamp(iat + refresh_in, UTC),
        lifetime_seconds=lifetime,
        refresh_in_seconds=refresh_in,
    )


def with_image(qr: QrRead, fmt: QrFormat) -> QrRead:
    if fmt is QrFormat.PNG:
        png = render.png_bytes(qr.qr_token)
        qr.image, qr.image_type = base64.b64encode(png).decode(), "image/png"
    elif fmt is QrFormat.SVG:
        qr.image, qr.image_type = render.svg_text(qr.qr_token), "image/svg+xml"
    return qr


async def throttle(ctx: IssuanceContext, seq: int) -> None:
    wait = await ctx.limiter.hit(str(seq))
    if wait:
        raise RateLimitedError(wait, "Too many QR codes for this e-card; retry later.")


async def issue(
    ctx: IssuanceContext,
    client_id: str,
    ecard_id: str,
    purpose: Purpose,
    pin: str | None,
    fmt: QrFormat,
) -> QrRead:
    """A QR code for the app's e-card.

    Raises EcardNotFoundError (404), EcardNotActiveError (403), PaymentNotEnabledError (403),
    PinRequiredError (422), the PIN problems (422/423), RateLimitedError (429). Writes
    nothing except, for payment codes, the PIN attempt counter.
    """
    row = await repository.owned_for_qr(ctx.hotdb, ecard_id, client_id)
    if row is None:
        raise EcardNotFoundError("No such e-card.")
    seq, status = int(row["seq"]), str(row["status"])
    if status != EcardStatus.ACTIVE.value:
        raise EcardNotActiveError(f"The e-card is {status}.")
    if purpose == "payment":
        if row["sign_level"] < 2:
            raise PaymentNotEnabledError("Enable payment (sign level 2) first.")
        if pin is None:
            raise PinRequiredError("A payment code needs the PIN.")
    await throttle(ctx, seq)
    if pin is not None and purpose == "payment":
        async with ctx.runtime.db.sessionmaker() as session, session.begin():
            await ecard_service.check_pin(session, ctx, seq, row["pin_hash"], pin)
    return with_image(make_token(ctx, seq, purpose), fmt)
