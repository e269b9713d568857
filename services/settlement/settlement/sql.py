"""Small SQL helpers the repositories share: dialect-aware ``INSERT … ON CONFLICT``."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession


def is_postgres(session: AsyncSession) -> bool:
    """True when the session is bound to PostgreSQL (SQLite otherwise)."""
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


def insert_for(session: AsyncSession, table: Table) -> Any:
    """An ``INSERT`` for ``table`` that supports ``on_conflict_do_*`` on either database."""
    if is_postgres(session):
        return postgresql.insert(table)
    return sqlite.insert(table)


AnyRow = Row[*tuple[Any, ...]]
"""A result row of any shape (what the repositories hand their services)."""


def table(model: type[Any]) -> Table:
    """The Core table of an ORM model (typed as such, for the repositories)."""
    return cast(Table, model.__table__)
