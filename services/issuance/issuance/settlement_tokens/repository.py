"""SQL of settlement tokens: lookup by hash, the atomic one-time redemption."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.models import Ecard, SettlementToken


async def with_ecard(session: AsyncSession, token_hash: bytes) -> Any | None:
    """(SettlementToken, Ecard) for ``token_hash``, or None."""
    stmt = (
        select(SettlementToken, Ecard)
        .join(Ecard, Ecard.seq == SettlementToken.ecard_seq)
        .where(SettlementToken.token_hash == token_hash)
    )
    return (await session.execute(stmt)).first()


async def redeem(
    session: AsyncSession, token_hash: bytes, hospital: str, ref: str, now: datetime
) -> bool:
    """Spend the token for ``ref`` if it is unspent, unexpired and the hospital's own."""
    result = await session.execute(
        update(SettlementToken)
        .where(
            SettlementToken.token_hash == token_hash,
            SettlementToken.hospital_client_id == hospital,
            SettlementToken.expires_at > now,
            SettlementToken.redeemed_at.is_(None),
        )
        .values(redeemed_at=now, redemption_ref=ref)
        .returning(SettlementToken.token_hash)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None
