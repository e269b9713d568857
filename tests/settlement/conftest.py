"""Settlement fixtures: the peer stub (session), a migrated database per module, the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devkit.cluster import free_port
from devkit.peerstub import PeerStub, StubServer
from settlement.config import SettlementSettings
from support.pg import async_url, create_databases, drop_databases
from support.settlement_app import Api, make_settings, prepare_database, running


@pytest.fixture(scope="session")
def stub_server() -> Iterator[StubServer]:
    server = StubServer(PeerStub(), free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_database(run_id: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated PostgreSQL database with the demo policies, for one test module."""
    import asyncio

    name = f"essc_{run_id}_{request.module.__name__.rsplit('.', 1)[-1][:30]}"
    asyncio.run(create_databases([name]))
    url = async_url(name)
    settings = SettlementSettings(database_url=url)
    asyncio.run(prepare_database(settings))
    try:
        yield url
    finally:
        asyncio.run(drop_databases([name]))


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite')}/settlement.db"
    asyncio.run(prepare_database(SettlementSettings(database_url=url)))
    return url


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest_asyncio.fixture
async def pg_api(pg_database: str, tmp_path: Path, stub_server: StubServer) -> AsyncIterator[Api]:
    async with running(make_settings(pg_database, tmp_path, stub_server), stub_server.stub) as api:
        yield api


@pytest_asyncio.fixture
async def sqlite_api(
    sqlite_database: str, tmp_path: Path, stub_server: StubServer
) -> AsyncIterator[Api]:
    settings = make_settings(sqlite_database, tmp_path, stub_server)
    async with running(settings, stub_server.stub) as api:
        yield api
