"""All SQL of verifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Verification

V = cast(Table, Verification.__table__)


async def add(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(V).values(**values))


async def get_for_client(
    session: AsyncSession, verification_id: str, client_id: str
) -> Verification | None:
    rows = await session.scalars(
        select(Verification).where(
            Verification.verification_id == verification_id, Verification.client_id == client_id
        )
    )
    return rows.first()


async def count_failure(
    session: AsyncSession, verification_id: str, max_attempts: int
) -> tuple[int, str] | None:
    """One more wrong code, atomically; the verification locks at ``max_attempts``."""
    stmt = (
        update(V)
        .where(V.c.verification_id == verification_id, V.c.status == "pending")
        .values(
            attempts=V.c.attempts + 1,
            status=case((V.c.attempts + 1 >= max_attempts, "locked"), else_=V.c.status),
        )
        .returning(V.c.attempts, V.c.status)
    )
    row = (await session.execute(stmt)).first()
    return (int(row.attempts), str(row.status)) if row is not None else None


async def mark_verified(
    session: AsyncSession, verification_id: str, max_attempts: int, ts: datetime
) -> bool:
    """Pending → verified exactly once (a concurrent confirm or lock wins nothing twice)."""
    stmt = (
        update(V)
        .where(
            V.c.verification_id == verification_id,
            V.c.status == "pending",
            V.c.attempts < max_attempts,
        )
        .values(status="verified", verified_at=ts)
        .returning(V.c.verification_id)
    )
    return (await session.execute(stmt)).first() is not None
