"""Dialect-aware statements both databases need: ``INSERT ... ON CONFLICT DO NOTHING``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement


def dialect(session: AsyncSession) -> str:
    bind = session.bind
    return bind.dialect.name if bind is not None else "postgresql"


async def insert_or_nothing(
    session: AsyncSession, table: Any, values: dict[str, Any], returning: ColumnElement[Any]
) -> bool:
    """Insert one row unless a unique key already holds it; True if this call inserted it.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and
    then does nothing: exactly one of them sees True (security.md "One-time QR").
    """
    stmt: Any = (
        pg_insert(table) if dialect(session) == "postgresql" else sqlite_insert(table)
    ).values(**values)
    result = await session.execute(stmt.on_conflict_do_nothing().returning(returning))
    return result.first() is not None
