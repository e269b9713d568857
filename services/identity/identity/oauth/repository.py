"""SQL of the token endpoint: single-use client assertion ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import UsedAssertion

T = cast(Table, UsedAssertion.__table__)


async def claim_jti(session: AsyncSession, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Record ``jti`` as used; False if it was already (a replay)."""
    values = {"client_id": client_id, "jti": jti, "expires_at": expires_at}
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    stmt: Any = (pg_insert(T) if dialect == "postgresql" else sqlite_insert(T)).values(**values)
    result = await session.execute(stmt.on_conflict_do_nothing().returning(T.c.jti))
    return result.first() is not None


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(T).where(T.c.expires_at < now))
