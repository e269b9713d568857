"""SQL of scanning, in SQLAlchemy Core text statements (the hot path; README "Issuance").

One read of the e-card by primary key, then the jti claim and the scan record in one
``INSERT ... ON CONFLICT (jti) DO NOTHING``, then (for hospitals' payment codes) the
settlement token: a single transaction, committed once by the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_ECARD = text(
    "SELECT seq, ecard_id, status, sign_level, qr_not_before, insured_region, gender, "
    "name_masked_enc, id_number_masked_enc FROM ecard WHERE seq = :seq"
)
_CLAIM = text(
    "INSERT INTO scan (scan_id, jti, ecard_seq, scanner_client_id, purpose, qr_purpose, "
    "qr_expires_at, created_at) VALUES (:scan_id, :jti, :seq, :client, :purpose, :qr_purpose, "
    ":qr_expires_at, :now) ON CONFLICT (jti) DO NOTHING RETURNING scan_id"
)
_TOKEN = text(
    "INSERT INTO settlement_token (token_hash, scan_id, ecard_seq, hospital_client_id, "
    "expires_at, created_at) VALUES (:hash, :scan_id, :seq, :client, :expires_at, :now)"
)


async def ecard_for_scan(session: AsyncSession, seq: int) -> Any | None:
    return (await session.execute(_ECARD, {"seq": seq})).first()


async def claim(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Record the scan and spend its jti; False if the jti was already spent."""
    return (await session.execute(_CLAIM, values)).first() is not None


async def add_settlement_token(
    session: AsyncSession,
    *,
    token_hash: bytes,
    scan_id: str,
    seq: int,
    client: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    await session.execute(
        _TOKEN,
        {
            "hash": token_hash,
            "scan_id": scan_id,
            "seq": seq,
            "client": client,
            "expires_at": expires_at,
            "now": now,
        },
    )
