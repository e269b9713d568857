"""Plain-driver database access for the two hot paths: QR issuance and scanning.

Measured on this machine (README "Issuance"): an ORM session checkout, query and commit
through SQLAlchemy cost ~0.8 ms of CPU per request, more than everything else on the QR
path together; the same statements on an asyncpg pool cost ~0.1 ms. On PostgreSQL these
paths therefore use their own small asyncpg pool; on SQLite (development, unit tests) they
run the same SQL through a SQLAlchemy session. Either way one transaction per call.

SQL is written once with ``:name`` parameters; :class:`Sql` derives the ``$n`` form asyncpg
needs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.problems import ServiceUnavailableError
from shared.tracing import statement_span

_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


class Sql:
    """One statement with named parameters, in SQLAlchemy and asyncpg form."""

    def __init__(self, statement: str) -> None:
        self.clause: TextClause = text(statement)
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.pg = _PARAM.sub(number, statement)
        self.names = tuple(names)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] for n in self.names]


class HotTx(Protocol):
    async def fetchrow(self, sql: Sql, params: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> None: ...


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetchrow(self, sql: Sql, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        with statement_span(sql.pg):  # traced like SQLAlchemy's statements (when on)
            row = await self.conn.fetchrow(sql.pg, *sql.args(params))
        return None if row is None else dict(row)

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> None:
        with statement_span(sql.pg):
            await self.conn.execute(sql.pg, *sql.args(params))


class _SaTx:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def fetchrow(self, sql: Sql, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        row = (await self.session.execute(sql.clause, dict(params))).first()
        return None if row is None else dict(row._mapping)

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> None:
        await self.session.execute(sql.clause, dict(params))


async def _no_reset(_conn: Any) -> None:
    return None


class HotDb:
    """An asyncpg pool on PostgreSQL, the service's SQLAlchemy engine otherwise."""

    def __init__(self, db: Database, pool: Any | None) -> None:
        self.db = db
        self.pool = pool

    @classmethod
    async def open(cls, db: Database, url: str, *, size: int, statement_timeout_ms: int) -> HotDb:
        if not url.startswith("postgresql"):
            return cls(db, None)
        import asyncpg

        dsn = re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            server_settings={"statement_timeout": str(statement_timeout_ms)},
            # asyncpg's default reset on release is one more round trip per request (advisory
            # unlock, CLOSE ALL, UNLISTEN, RESET ALL); these paths leave no session state:
            # plain statements in transactions, no LISTEN, no session-level locks or SETs.
            reset=_no_reset,
        )
        return cls(db, pool)

    async def ping(self) -> bool:
        """Readiness of the pool (always true on SQLite: the engine's own check covers it)."""
        if self.pool is None:
            return True
        try:
            async with self.pool.acquire(timeout=1) as conn:
                await conn.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def fetchrow(self, sql: Sql, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """One read-only statement, its own transaction (no BEGIN/COMMIT round trips)."""
        if self.pool is None:
            async with self.db.sessionmaker() as session:
                return await _SaTx(session).fetchrow(sql, params)
        async with self._lost_is_503():
            async with self.pool.acquire() as conn:
                return await _PgTx(conn).fetchrow(sql, params)
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _lost_is_503(self) -> AsyncIterator[None]:
        import asyncpg

        lost = (
            OSError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.QueryCanceledError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.TooManyConnectionsError,
            asyncpg.exceptions.InternalClientError,  # protocol out of step: connection unusable
        )
        try:
            yield
        except lost:
            raise ServiceUnavailableError(
                "The database is unavailable; nothing was written. Retry shortly.",
                headers={"Retry-After": "1"},
            ) from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[HotTx]:
        """One transaction: committed when the block exits normally, else rolled back.

        A lost connection or cancelled statement is a 503 problem (nothing was written).
        """
        if self.pool is not None:
            async with self._lost_is_503(), self.pool.acquire() as conn, conn.transaction():
                yield _PgTx(conn)
        else:
            async with self.db.sessionmaker() as session, session.begin():
                yield _SaTx(session)
