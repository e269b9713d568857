"""SQL of QR issuance: one indexed read, in SQLAlchemy Core (the hot path; README "Issuance")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_OWNED = text(
    "SELECT seq, status, sign_level, pin_hash FROM ecard "
    "WHERE ecard_id = :ecard_id AND partner_client_id = :client_id AND link_key IS NOT NULL"
)


async def owned_for_qr(session: AsyncSession, ecard_id: str, client_id: str) -> Any | None:
    """(seq, status, sign_level, pin_hash) of the app's linked e-card, or None."""
    result = await session.execute(_OWNED, {"ecard_id": ecard_id, "client_id": client_id})
    return result.first()
