"""A request whose commit fails is never answered as a success and leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from shared.app import build_service_app
from shared.db import is_connection_error, request_session
from shared.settings import ServiceSettings
from support.pg import async_url, create_databases, drop_databases, server_url

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

Session = Annotated[AsyncSession, Depends(request_session, scope="function")]


@pytest_asyncio.fixture
async def database(run_id: str) -> AsyncIterator[str]:
    name = f"essc_{run_id}_commit"
    await create_databases([name])
    conn = await asyncpg.connect(server_url() + "/" + name)
    # The uniqueness is checked only at COMMIT, so the handler itself succeeds.
    await conn.execute(
        "CREATE TABLE item (k int, CONSTRAINT uq_item_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"
    )
    await conn.close()
    try:
        yield name
    finally:
        await drop_databases([name])


def _app(database_url: str, keys: Path) -> object:
    router = APIRouter()

    @router.post("/v1/items")
    async def create(session: Session) -> dict[str, str]:
        await session.execute(text("INSERT INTO item (k) VALUES (1), (1)"))
        return {"status": "created"}

    @router.post("/v1/fine")
    async def fine(session: Session) -> dict[str, str]:
        await session.execute(text("INSERT INTO item (k) VALUES (7)"))
        return {"status": "created"}

    settings = ServiceSettings(database_url=database_url, keys_dir=keys, environment="test")
    return build_service_app(
        settings=settings,
        service="probe",
        title="probe",
        description="probe",
        key_purposes=(),
        routers=[router],
    )


async def test_failing_commit_is_an_error_and_writes_nothing(database: str, tmp_path: Path) -> None:
    app = _app(async_url(database), tmp_path / "keys")
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            bad = await client.post("/v1/items")
            good = await client.post("/v1/fine")
    assert bad.status_code >= 500
    assert bad.headers["content-type"] == "application/problem+json"
    assert "created" not in bad.text
    assert good.status_code == 200
    conn = await asyncpg.connect(server_url() + "/" + database)
    try:
        rows = await conn.fetch("SELECT k FROM item ORDER BY k")
    finally:
        await conn.close()
    assert [r["k"] for r in rows] == [7]


async def test_connection_limit_reached_is_503_not_500(
    database: str, tmp_path: Path, run_id: str
) -> None:
    """PostgreSQL refusing a connection (53300, as with "sorry, too many clients already"
    when replicas' pools outgrow max_connections) is the retryable 503, not an internal error."""
    role = f"essc_{run_id}_full"
    admin = await asyncpg.connect(server_url() + "/" + database)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        url = async_url(database).replace("postgres@", f"{role}@", 1)
        assert role in url
        app = _app(url, tmp_path / "keys")
        async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                resp = await client.post("/v1/fine")
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["retry-after"] == "1"
    assert "nothing was written" in resp.json()["detail"]


async def test_server_wide_connection_limit_is_a_connection_error(database: str) -> None:
    """The server-wide refusal ("sorry, too many clients already", 53300) names no connection
    in its message: it is recognised by its SQLSTATE class. The refusal comes from the
    connect call, as asyncpg raises it; the server itself is not exhausted (others share it)."""

    async def refused() -> asyncpg.Connection:
        raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")

    engine = create_async_engine(async_url(database), async_creator=refused)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert "too many clients" in str(caught.value)
    assert is_connection_error(caught.value)
    assert not is_connection_error(
        DBAPIError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("duplicate key"))
    )
