"""The e-card web page: short-lived links, the card face, fresh identity QR codes.

The link's token is the page's only credential: 256 random bits in the URL path, stored as
its SHA-256, valid ``h5_session_seconds``. The page never sees an access token; the partner
app's backend makes the link with its own token and hands the URL to its web view.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from issuance.context import IssuanceContext
from issuance.ecards import service as ecard_service
from issuance.errors import EcardNotActiveError, SessionExpiredError
from issuance.h5 import repository
from issuance.models import Ecard, H5Session
from issuance.qrcodes import service as qr_service
from issuance.qrcodes.schemas import QrFormat, QrRead
from issuance.times import as_utc, utcnow
from shared.money import format_fen
from shared.problems import ProblemError
from shared.validation import region_name
from shared.wire import EcardStatus, HolderAccountSummary

logger = logging.getLogger("issuance.h5")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # token_urlsafe(32); anything else is no link

PAGE_PATH = "/h5/ecard/"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create(session: AsyncSession, ctx: IssuanceContext, ecard: Ecard) -> tuple[str, Any]:
    """A new link to ``ecard``'s page: (url, expires_at)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + timedelta(seconds=ctx.settings.h5_session_seconds)
    repository.add(
        session,
        H5Session(
            token_hash=_hash(token), ecard_seq=ecard.seq, expires_at=expires_at, created_at=now
        ),
    )
    await session.flush()
    return ctx.settings.public_issuer + PAGE_PATH + token, expires_at


async def ecard_for(session: AsyncSession, token: str) -> Ecard:
    """The e-card behind a live link; SessionExpiredError (410) otherwise."""
    if not _TOKEN.match(token):
        raise SessionExpiredError("This link is not valid.")
    ecard = await repository.ecard_for(session, _hash(token), utcnow())
    if ecard is None:
        raise SessionExpiredError("This link has expired; open the e-card again in the app.")
    return ecard


async def _summary(ctx: IssuanceContext, holder_ref: str) -> HolderAccountSummary | None:
    try:
        return await ctx.runtime.client("settlement").call(
            "GET",
            f"/internal/v1/holders/{holder_ref}/summary",
            HolderAccountSummary,
            params={"limit": "5"},
        )
    except ProblemError as exc:
        logger.info("account summary unavailable: %s", exc.status)
    except Exception as exc:  # the page works without it
        logger.info("account summary unavailable: %s", type(exc).__name__)
    return None


async def card_face(ctx: IssuanceContext, ecard: Ecard) -> dict[str, Any]:
    """What the page shows; ``account`` and ``recent`` only when settlement answered."""
    data: dict[str, Any] = {
        "name_masked": ecard_service.decrypt(ctx, ecard, "name_masked"),
        "id_number_masked": ecard_service.decrypt(ctx, ecard, "id_number_masked"),
        "region_code": ecard.region_code,
        "region_name": region_name(ecard.region_code),
        "insured_region": ecard.insured_region,
        "sign_no": ecard.sign_no,
        "sign_level": ecard.sign_level,
        "status": ecard.status,
        "valid_until": as_utc(ecard.valid_until).date().isoformat(),
    }
    summary = await _summary(ctx, ecard.holder_ref)
    if summary is not None:
        data["account"] = {
            "year": summary.year,
            "balance": format_fen(summary.balance_fen),
            "fund_paid": format_fen(summary.fund_paid_fen),
            "cap_remaining": format_fen(summary.cap_remaining_fen),
        }
        data["recent"] = [
            {
                "settled_at": s.settled_at.isoformat(),
                "hospital_name": s.hospital_name,
                "total": format_fen(s.total_fen),
                "fund_pay": format_fen(s.fund_pay_fen),
                "account_pay": format_fen(s.account_pay_fen),
                "cash_pay": format_fen(s.cash_pay_fen),
                "refunded": s.refunded,
            }
            for s in summary.recent
        ]
    return data


async def qrcode(ctx: IssuanceContext, ecard: Ecard) -> QrRead:
    """A fresh identity QR code with its PNG for the page."""
    if ecard.status != EcardStatus.ACTIVE.value:
        raise EcardNotActiveError(f"The e-card is {ecard.status}.")
    await qr_service.throttle(ctx, ecard.seq)
    return qr_service.with_image(qr_service.make_token(ctx, ecard.seq, "identity"), QrFormat.PNG)
