"""SQL of the e-card web page's sessions (stored by SHA-256 of the link token)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.models import Ecard, H5Session


def add(session: AsyncSession, row: H5Session) -> None:
    session.add(row)


async def ecard_for(session: AsyncSession, token_hash: bytes, now: datetime) -> Ecard | None:
    """The linked e-card of an unexpired session, else None."""
    stmt = (
        select(Ecard)
        .join(H5Session, H5Session.ecard_seq == Ecard.seq)
        .where(
            H5Session.token_hash == token_hash,
            H5Session.expires_at > now,
            Ecard.link_key.is_not(None),
        )
    )
    return (await session.execute(stmt)).scalar_one_or_none()
