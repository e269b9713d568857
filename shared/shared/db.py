"""Async SQLAlchemy plumbing: PostgreSQL and embedded SQLite engines, one session per request.

The per-request session commits exactly once, after the handler returns and
before the response is sent (the dependency is declared with
``scope="function"``, so FastAPI runs its exit code before serialising and a
failing commit becomes an error answer, never a success). Any exception rolls
back. Connection-level failures render as 503 problems, not 500s.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import MetaData, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from starlette.responses import Response

from shared.problems import problem_response

logger = logging.getLogger("shared.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """A MetaData with the shared constraint naming convention (stable migration names)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    statement_timeout_ms: int = 5000,
    echo: bool = False,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``).

    PostgreSQL sessions get a ``statement_timeout``; SQLite gets WAL, foreign keys
    and a busy timeout so that the embedded default behaves under concurrent use.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(max(statement_timeout_ms * 4, 60_000)),
            },
            "timeout": 5,
        },
    )


class Database:
    """The engine and session factory of one service."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def ping(self) -> bool:
        """True if a trivial query succeeds (readiness)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit once after the handler, roll back on any error.

    Declare it with ``Depends(request_session, scope="function")``. Service code
    flushes but never commits.
    """
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under ``session``, inside the session's open transaction.

    For hot paths that measured SQLAlchemy's per-statement cost too high (see the settlement
    README): statements sent here commit or roll back with the session. The transaction is
    begun through the SQLAlchemy adapter if it was not yet, so nothing ever autocommits.
    Cached per session transaction. PostgreSQL (asyncpg) only.
    """
    sync = session.sync_session
    tx = sync.get_transaction()
    cached = session.info.get("essc_driver")
    if cached is not None and tx is not None and cached[0] is tx:
        return cached[1]
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if getattr(adapted, "_transaction", True) is None:
        await adapted._start_transaction()  # what the adapter itself does before a statement
    driver = raw.driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("no transaction open on the driver connection")
    session.info["essc_driver"] = (sync.get_transaction(), driver)
    return driver


# SQLSTATE classes meaning "no usable connection", not "this statement was wrong": 08
# connection exception, 53 insufficient resources (53300: the server's or the role's
# connection limit, seen when replicas and their pools outgrow max_connections), 57P
# operator intervention (shutdown, cannot connect now). Nothing was written: 503, retry.
_CONNECTION_SQLSTATES = ("08", "53", "57P")


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the database connection itself (not of a statement's logic)."""
    if isinstance(exc, PoolTimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, OperationalError):
            return True
        orig = getattr(exc, "orig", None)
        name = type(orig).__name__ if orig is not None else ""
        sqlstate = getattr(orig, "sqlstate", None) or getattr(
            getattr(orig, "__cause__", None), "sqlstate", None
        )
        if isinstance(sqlstate, str) and sqlstate.startswith(_CONNECTION_SQLSTATES):
            return True
        return (
            name
            in {
                "ConnectionDoesNotExistError",
                "InterfaceError",
                "AdminShutdownError",
                "CannotConnectNowError",
                "ConnectionFailureError",
                "QueryCanceledError",
            }
            or "connection" in str(orig).lower()
        )
    return False


async def _handle_db_error(request: Request, exc: Exception) -> Response:
    if is_connection_error(exc):
        return problem_response(
            503,
            detail="The database is unavailable; nothing was written. Retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )
    logger.error("database error", exc_info=exc)
    return problem_response(500, detail="An unexpected error occurred.", instance=request.url.path)


def install_db_error_handler(app: FastAPI) -> None:
    """Render lost connections, pool timeouts and cancelled statements as 503 problems."""
    app.add_exception_handler(DBAPIError, _handle_db_error)
    app.add_exception_handler(PoolTimeoutError, _handle_db_error)
