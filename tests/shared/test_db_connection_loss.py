"""A database connection lost under raw driver use is a 503 problem, and the pool recovers.

The hot paths send statements on the asyncpg connection itself (``driver_connection``):
there, SQLAlchemy does not wrap the error. The network-fault tests (tests/e2e/test_faults.py)
found a settlement answered 500 when its connection died at the ``BEGIN`` that
``driver_connection`` sends through the adapter. These tests kill the request's own
backend with ``pg_terminate_backend`` at each such point, deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

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


async def _terminate(database: str, pid: int) -> None:
    """Terminate backend ``pid`` and wait until it is gone."""
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(200):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the backend did not go away")
    finally:
        await conn.close()


def _app(database: str, keys: Path) -> Any:
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

    @router.post("/v1/fine")
    async def fine(session: Session) -> dict[str, str]:
        await session.execute(text("INSERT INTO item (k) VALUES (7)"))
        return {"status": "written"}

    settings = ServiceSettings(database_url=async_url(database), keys_dir=keys, environment="test")
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
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            lost = await client.post(path)
            after = [await client.post("/v1/fine") for _ in range(3)]
    assert lost.status_code == 503, lost.text
    assert lost.headers["content-type"] == "application/problem+json"
    assert lost.headers["retry-after"] == "1"
    assert [r.status_code for r in after] == [200, 200, 200]
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        assert [r["k"] for r in await conn.fetch("SELECT k FROM item ORDER BY k")] == [7, 7, 7]
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
