"""Async SQLAlchemy plumbing: PostgreSQL and embedded SQLite engines, one session per request.

The per-request session commits exactly once, after the handler returns and
before the response is sent (the dependency is declared with
``scope="function"``, so FastAPI runs its exit code before serialising and a
failing commit becomes an error answer, never a success). Any exception rolls
back. Connection-level failures render as 503 problems, not 500s, whichever layer
raised them: SQLAlchemy, its asyncpg adapter (statements sent outside SQLAlchemy's
execution, e.g. the ``BEGIN`` of :func:`driver_connection`) or asyncpg itself (hot paths
that use the driver connection directly).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from sqlalchemy import MetaData, event, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from starlette.responses import Response

from shared.problems import ServiceUnavailableError, problem_response

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

    PostgreSQL sessions get a ``statement_timeout``, and the driver a client-side
    ``command_timeout`` a second longer: the server cancels a slow statement itself, but
    when the network swallows a statement (or its answer) no answer ever comes, and the
    request would wait on it forever, holding its pooled connection (the network-fault
    tests found this). SQLite gets WAL, foreign keys and a busy timeout so that the
    embedded default behaves under concurrent use.
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
            "command_timeout": statement_timeout_ms / 1000 + 1,
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
            await commit(session)


# Every exception class the driver layers raise (SQLAlchemy's, the adapter's, asyncpg's).
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeoutError,
    AsyncAdapt_asyncpg_dbapi.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
# What a database call may raise when the database is out of reach (the driver's command
# timeout included: a peer call's timeout is a 504 problem already, shared.http).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *DRIVER_ERRORS)


async def commit(session: AsyncSession) -> None:
    """Commit the request's transaction; raises 503 if the connection fails during COMMIT.

    Then the outcome is unknown: the server may have committed and only its answer was lost
    (the network-fault tests produce exactly that). The problem says so instead of "nothing
    was written", so that a client repeats the request only with its Idempotency-Key, or
    after checking. Any other failure (a deferred constraint) is re-raised as it is.
    """
    try:
        await session.commit()
    except UNAVAILABLE_ERRORS as exc:
        if not (isinstance(exc, TimeoutError) or is_connection_error(exc)):
            raise
        raise ServiceUnavailableError(
            "The database connection failed while committing: the request may or may not "
            "have been applied. Retry with the same Idempotency-Key, or check first.",
            headers={"Retry-After": "1"},
        ) from exc


_AFTER_COMMIT = "essc_after_commit"
_after_commit_listening = False


def _run_after_commit(sync: Session) -> None:
    if sync.in_nested_transaction():  # a savepoint released: not the commit yet
        return
    pending = sync.info.get(_AFTER_COMMIT)
    if not pending:
        return
    sync.info[_AFTER_COMMIT] = []
    for pending_action in pending:
        try:
            pending_action()
        except Exception:
            logger.exception("an after-commit action failed")


def _drop_after_commit(sync: Session, transaction: Any) -> None:
    if transaction.parent is None and sync.info.get(_AFTER_COMMIT):
        sync.info[_AFTER_COMMIT] = []  # the outermost transaction ended uncommitted


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's current transaction commits; drop it on rollback.

    For effects that must follow the data, not the attempt: a business counter bumped in
    service code would count a write whose commit then failed, or count twice a request
    retried after a serialization failure. Actions run in order, synchronously, right
    after the commit; one that raises is logged and does not stop the others.

    The two listeners are registered once, on the Session class, on first use (registering
    them on each request's session cost about 2% of a settlement's CPU); they act only on
    sessions that have actions pending.
    """
    global _after_commit_listening
    if not _after_commit_listening:
        event.listen(Session, "after_commit", _run_after_commit)
        event.listen(Session, "after_transaction_end", _drop_after_commit)
        _after_commit_listening = True
    info = session.sync_session.info
    actions: list[Callable[[], None]] | None = info.get(_AFTER_COMMIT)
    if actions is None:
        actions = info[_AFTER_COMMIT] = []
    actions.append(action)


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


# The server or the connection, not the statement: SQLSTATE classes 08 (connection
# exception), 53 (insufficient resources: 53300 is the connection limit, seen when replicas
# and their pools outgrow max_connections), 57P (shutdown, cannot connect now), and a
# cancelled statement (57014, statement_timeout). Nothing was written: 503, retry.
_CONNECTION_SQLSTATES = ("08", "53", "57P")
_UNAVAILABLE_SQLSTATES = frozenset({"57014"})
_CONNECTION_ERROR_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "AdminShutdownError",
        "CannotConnectNowError",
        "ConnectionFailureError",
        "QueryCanceledError",
        "TooManyConnectionsError",
        # asyncpg's protocol out of step with the server (seen when the backend is terminated
        # while the adapter starts a transaction): the connection is unusable, nothing written.
        "InternalClientError",
    }
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig`` (the adapter's error), then the
    driver's exception the adapter raised it from."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 6 and current not in chain:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the database connection itself (not of a statement's logic)."""
    for err in _causes(exc):
        if isinstance(err, PoolTimeoutError | ConnectionError | OSError):
            return True
        if isinstance(err, DBAPIError) and (
            err.connection_invalidated or isinstance(err, OperationalError)
        ):
            return True
        sqlstate = str(getattr(err, "sqlstate", None) or "")
        if sqlstate.startswith(_CONNECTION_SQLSTATES) or sqlstate in _UNAVAILABLE_SQLSTATES:
            return True
        if type(err).__name__ in _CONNECTION_ERROR_NAMES:
            return True
    if isinstance(exc, DBAPIError):
        return "connection" in str(exc.orig).lower()
    return False


async def _handle_db_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, TimeoutError):
        # The driver's command timeout: the statement (even a COMMIT) may or may not have run.
        return problem_response(
            503,
            detail="The database did not answer in time. Retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )
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
    """Render lost connections, pool and command timeouts, cancelled statements as 503s.

    Also the errors that reach a handler unwrapped by SQLAlchemy: the asyncpg adapter's
    (``BEGIN`` sent by :func:`driver_connection`) and asyncpg's own (statements on the
    driver connection). Before, a connection lost there was a 500 (issue 7, network faults).
    """
    for exc_class in UNAVAILABLE_ERRORS:
        app.add_exception_handler(exc_class, _handle_db_error)
