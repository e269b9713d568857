"""Database faults at the request's unit of work: 503 problems, honest ones, and a pool that
recovers (found by the network-fault tests, tests/e2e/test_faults.py).

- The hot paths send statements on the asyncpg connection itself (``driver_connection``),
  where SQLAlchemy does not wrap the error: a connection lost at the ``BEGIN`` it sends was a
  500. The request's own backend is killed with ``pg_terminate_backend`` at each such point.
- A statement whose answer never comes (the network swallowed it) held the request forever:
  now the driver's command timeout ends it as a 503.
- A connection lost during COMMIT, after the server committed (a fault proxy cuts the answer),
  was a 503 saying "nothing was written": now it says the outcome is unknown.
- Under SQLAlchemy's adapter, connection errors are told by their SQLSTATE.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from devkit.faultproxy import ThreadedFaultProxy
from shared.app import build_service_app
from shared.db import driver_connection, is_connection_error, request_session
from shared.settings import ServiceSettings
from support.pg import async_url, create_databases, drop_databases, server_url

Session = Annotated[AsyncSession, Depends(request_session, scope="function")]


@pytest_asyncio.fixture
async def database(run_id: str) -> AsyncIterator[str]:
    name = f"essc_{run_id}_connloss"
    await create_databases([name])
    conn = await asyncpg.connect(server_url() + "/" + name)
    await conn.execute("CREATE TABLE item (k int)")
    await conn.close()
    try:
        yield name
    finally:
        await drop_databases([name])


async def _items(database: str) -> list[int]:
    """What the table holds, read on a connection of its own."""
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        return [r["k"] for r in await conn.fetch("SELECT k FROM item ORDER BY k")]
    finally:
        await conn.close()


KILLED: list[bool] = []  # one entry per _terminate call: did the backend go away?


async def _terminate(database: str, pid: int) -> None:
    """Terminate backend ``pid`` and wait until it is gone (the result in ``KILLED``: an
    assertion here, inside a route, would be an indistinct 500)."""
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        deadline = asyncio.get_running_loop().time() + 15  # generous: a loaded shared server
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            if asyncio.get_running_loop().time() > deadline:
                KILLED.append(False)
                return
            await asyncio.sleep(0.01)
        KILLED.append(True)
    finally:
        await conn.close()


def _app(database: str, keys: Path, *, statement_timeout_ms: int = 5000) -> Any:
    router = APIRouter()

    async def own_pid(session: AsyncSession) -> int:
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        return int(raw.driver_connection.get_server_pid())  # type: ignore[union-attr]

    @router.post("/v1/lost-before-begin")
    async def lost_before_begin(session: Session) -> dict[str, str]:
        # The connection is checked out, the adapter has not sent BEGIN yet.
        await _terminate(database, await own_pid(session))
        conn = await driver_connection(session)
        await conn.execute("INSERT INTO item (k) VALUES (1)")
        return {"status": "written"}

    @router.post("/v1/lost-mid-transaction")
    async def lost_mid_transaction(session: Session) -> dict[str, str]:
        conn = await driver_connection(session)
        await conn.execute("INSERT INTO item (k) VALUES (2)")
        await _terminate(database, await own_pid(session))
        await conn.execute("INSERT INTO item (k) VALUES (3)")
        return {"status": "written"}

    @router.post("/v1/unanswered")
    async def unanswered(session: Session) -> dict[str, str]:
        # No server-side limit for this one statement: only the driver's own timeout is left,
        # as when the network swallows a statement and no answer ever comes.
        await session.execute(text("SET LOCAL statement_timeout = 0"))
        await session.execute(text("INSERT INTO item (k) VALUES (4)"))
        await session.execute(text("SELECT pg_sleep(30)"))
        return {"status": "written"}

    @router.post("/v1/fine")
    async def fine(session: Session) -> dict[str, str]:
        await session.execute(text("INSERT INTO item (k) VALUES (7)"))
        return {"status": "written"}

    settings = ServiceSettings(
        database_url=async_url(database),
        keys_dir=keys,
        environment="test",
        db_statement_timeout_ms=statement_timeout_ms,
    )
    return build_service_app(
        settings=settings,
        service="probe",
        title="probe",
        description="probe",
        key_purposes=(),
        routers=[router],
    )


@pytest.mark.postgres
@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/v1/lost-before-begin", "/v1/lost-mid-transaction"])
async def test_a_lost_connection_under_raw_driver_use_is_a_503_and_the_pool_recovers(
    database: str, tmp_path: Path, path: str
) -> None:
    app = _app(database, tmp_path / "keys")
    KILLED.clear()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            lost = await client.post(path)
            after = [await client.post("/v1/fine") for _ in range(3)]
    assert KILLED == [True], "the request's backend was not terminated"
    assert lost.status_code == 503, lost.text
    assert lost.headers["content-type"] == "application/problem+json"
    assert lost.headers["retry-after"] == "1"
    assert [r.status_code for r in after] == [200, 200, 200]
    assert await _items(database) == [7, 7, 7]  # only the three fine requests wrote


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_statement_never_answered_ends_at_the_driver_timeout_as_a_503(
    database: str, tmp_path: Path
) -> None:
    # statement_timeout 200 ms → the driver's command timeout 1.2 s (was: none, wait forever).
    app = _app(database, tmp_path / "keys", statement_timeout_ms=200)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            hung = await asyncio.wait_for(client.post("/v1/unanswered"), timeout=15)
            after = [await client.post("/v1/fine") for _ in range(3)]
    assert hung.status_code == 503, hung.text
    assert hung.headers["content-type"] == "application/problem+json"
    assert hung.json()["detail"] == "The database did not answer in time. Retry shortly."
    assert [r.status_code for r in after] == [200, 200, 200]
    assert await _items(database) == [7, 7, 7]  # only the three fine requests wrote


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_commit_whose_answer_is_lost_is_a_503_that_does_not_claim_nothing_was_written(
    database: str, tmp_path: Path
) -> None:
    pg = urlsplit(async_url(database))
    with ThreadedFaultProxy(pg.hostname or "127.0.0.1", pg.port or 5432) as proxy:
        router = APIRouter()

        @router.post("/v1/ambiguous")
        async def ambiguous(session: Session) -> dict[str, str]:
            await session.execute(text("INSERT INTO item (k) VALUES (5)"))
            # The COMMIT sent after this return reaches the server after 0.5 s; its answer
            # would come back after 1 s, but the connection is reset at 0.75 s.
            proxy.set("latency", latency=0.5)
            threading.Timer(0.75, proxy.reset_all).start()
            return {"status": "written"}

        @router.post("/v1/fine")
        async def fine(session: Session) -> dict[str, str]:
            await session.execute(text("INSERT INTO item (k) VALUES (7)"))
            return {"status": "written"}

        behind = pg._replace(netloc=f"{pg.username}@127.0.0.1:{proxy.port}").geturl()
        settings = ServiceSettings(database_url=behind, keys_dir=tmp_path, environment="test")
        app: Any = build_service_app(
            settings=settings,
            service="probe",
            title="probe",
            description="probe",
            key_purposes=(),
            routers=[router],
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                lost = await client.post("/v1/ambiguous")
                proxy.set("pass")
                after = [await client.post("/v1/fine") for _ in range(3)]
    assert lost.status_code == 503, lost.text
    assert lost.headers["content-type"] == "application/problem+json"
    assert "may or may not have been applied" in lost.json()["detail"]
    assert "nothing was written" not in lost.text
    assert [r.status_code for r in after] == [200, 200, 200]
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        # It was applied: "nothing was written" (the answer before) would have been false.
        assert [r["k"] for r in await conn.fetch("SELECT k FROM item ORDER BY k")] == [5, 7, 7, 7]
    finally:
        await conn.close()


def _through_sqlalchemy(driver_error: Exception) -> DBAPIError:
    """``driver_error`` as SQLAlchemy hands it to the service: translated by the asyncpg
    adapter, then wrapped (what a failed connect or statement raises)."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    dbapi = dialect.import_dbapi()
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, driver_error)
    except Exception as adapted:
        wrapped = DBAPIError.instance("SELECT 1", None, adapted, dbapi.Error)
        assert isinstance(wrapped, DBAPIError)
        return wrapped
    raise AssertionError("the adapter did not translate the error")


@pytest.mark.parametrize(
    ("driver_error", "connection"),
    [
        # max_connections reached: the message does not say "connection" (was a 500).
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.AdminShutdownError("terminating due to administrator command"), True),
        (asyncpg.UniqueViolationError("duplicate key value violates unique constraint"), False),
        (asyncpg.DivisionByZeroError("division by zero"), False),
    ],
)
def test_connection_errors_are_told_by_their_sqlstate_under_the_adapter(
    driver_error: Exception, connection: bool
) -> None:
    assert is_connection_error(_through_sqlalchemy(driver_error)) is connection
    assert is_connection_error(driver_error) is connection


def test_a_protocol_out_of_step_with_the_server_is_a_connection_error() -> None:
    """Seen in CI: the backend terminated while the adapter started the transaction left
    asyncpg's protocol mid-operation ("cannot switch to state 15"): a 503, not a 500."""
    from asyncpg.exceptions import InternalClientError

    error = InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    assert is_connection_error(error)
