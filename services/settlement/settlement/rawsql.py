"""Raw SQL for the hot path (quote, settle): asyncpg on PostgreSQL, ``text()`` on SQLite.

Why: the settle transaction measured (client CPU per transaction, this machine, see the
README and ``python -m devkit.bench.ledger_styles``) about 4.4–7 ms with SQLAlchemy Core
constructs, 1.5–1.8 ms with prebuilt ``text()`` and 0.5–0.8 ms on the asyncpg connection
itself. So hot statements are written once for asyncpg (``$1`` placeholders) and sent to the
driver connection of the request's session — in its transaction, committed with it
(:func:`shared.db.driver_connection`). The embedded SQLite (development) runs the same
statement through ``text()`` with ``:pN`` parameters.

Each statement sent to the driver gets its own trace span when tracing is on
(:func:`shared.tracing.statement_span`), as SQLAlchemy's statements do.

Rows come back as mappings (``row["column"]``). Timestamps: pass aware datetimes; read them
with :func:`utc` (SQLite hands back text). JSON: pass text (:func:`jsontext`), read with
:func:`jsonvalue`. Database errors are re-raised as SQLAlchemy's, so the service's error
handlers (503 for a lost connection, bounded retry on deadlock) see one kind of exception.

A request that needs no transaction (a quote without an ``Idempotency-Key``: one read, then
one INSERT, committing no money) marks its session with :func:`autocommit`: its statements
then go to the driver connection without the ``BEGIN``/``COMMIT`` round trips, each atomic on
its own. A statement SQLAlchemy itself sends (a policy not cached yet) still opens the
session's transaction, and the driver statements after it join that transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy import TextClause, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.sql import is_postgres
from shared.db import driver_connection
from shared.tracing import statement_span

_PARAM = re.compile(r"\$(\d+)")
_CAST = re.compile(r"::[a-z_]+(\[\])?")
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


class Statement:
    """One SQL statement for asyncpg, with its SQLite rendering."""

    __slots__ = ("lite", "pg")

    def __init__(self, pg: str, sqlite: str | None = None) -> None:
        self.pg = pg
        source = sqlite if sqlite is not None else _CAST.sub("", pg)
        self.lite: TextClause = text(_PARAM.sub(r":p\1", source))


_AUTOCOMMIT = "essc_autocommit"
_AUTOCOMMIT_DRIVER = "essc_autocommit_driver"


def autocommit(session: AsyncSession) -> None:
    """Send this session's raw statements without an explicit transaction (see above)."""
    session.info[_AUTOCOMMIT] = True


async def _driver(session: AsyncSession) -> Any:
    if not session.info.get(_AUTOCOMMIT):
        return await driver_connection(session)
    # Cached per session transaction, as driver_connection does: after a rollback the
    # connection went back to the pool and another one is checked out.
    tx = session.sync_session.get_transaction()
    cached = session.info.get(_AUTOCOMMIT_DRIVER)
    if cached is not None and tx is not None and cached[0] is tx:
        return cached[1]
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise RuntimeError("no driver connection")
    session.info[_AUTOCOMMIT_DRIVER] = (session.sync_session.get_transaction(), driver)
    return driver


def _lite_param(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TS)
    return value


def _wrap(sql: str, exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
        return OperationalError(sql, None, exc, connection_invalidated=True)
    return DBAPIError(sql, None, exc)


async def fetchrow(session: AsyncSession, stmt: Statement, *args: Any) -> Mapping[str, Any] | None:
    """The first row, or None."""
    if is_postgres(session):
        conn = await _driver(session)
        try:
            with statement_span(stmt.pg):
                row: Mapping[str, Any] | None = await conn.fetchrow(stmt.pg, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _wrap(stmt.pg, exc) from exc
        return row
    params = {f"p{i}": _lite_param(a) for i, a in enumerate(args, 1)}
    first = (await session.execute(stmt.lite, params)).first()
    return None if first is None else cast(Mapping[str, Any], first._mapping)


async def fetchrow_pg(conn: Any, sql: str, *args: Any) -> Mapping[str, Any]:
    """A PostgreSQL-only statement (data-modifying CTEs) on the driver connection: its row."""
    try:
        with statement_span(sql):
            row: Mapping[str, Any] | None = await conn.fetchrow(sql, *args)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _wrap(sql, exc) from exc
    assert row is not None
    return row


async def execute_pg(conn: Any, sql: str, *args: Any) -> None:
    """A PostgreSQL-only statement on the driver connection, for its effect."""
    try:
        with statement_span(sql):
            await conn.execute(sql, *args)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise _wrap(sql, exc) from exc


async def execute(session: AsyncSession, stmt: Statement, *args: Any) -> None:
    """Run a statement for its effect."""
    if is_postgres(session):
        conn = await _driver(session)
        try:
            with statement_span(stmt.pg):
                await conn.execute(stmt.pg, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _wrap(stmt.pg, exc) from exc
        return
    params = {f"p{i}": _lite_param(a) for i, a in enumerate(args, 1)}
    await session.execute(stmt.lite, params)


def utc(value: Any) -> datetime:
    """A timestamp column as an aware UTC datetime (SQLite returns text)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.strptime(str(value), _SQLITE_TS).replace(tzinfo=UTC)


def jsontext(value: Any) -> str:
    return orjson.dumps(value).decode()


def jsonvalue(value: Any) -> Any:
    """A JSON column's value (asyncpg and SQLite return text; SQLAlchemy may have parsed it)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
