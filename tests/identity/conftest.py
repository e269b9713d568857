"""Identity fixtures: one migrated database per module (SQLite and PostgreSQL), an app per test."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from identity.cli import MIGRATIONS
from identity.main import create_app
from shared.migrate import upgrade
from support.identity import Harness, gateway_ring, install_gateway_ring, settings_for
from support.pg import async_url, create_databases, drop_databases

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def identity_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[tuple[str, Path]]:
    """(database URL, keys directory), migrated; dropped after the module."""
    tmp = tmp_path_factory.mktemp("identity")
    keys = tmp / "keys"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp}/identity.db"
        upgrade(MIGRATIONS, url)
        yield url, keys
        return
    tag = hashlib.sha1(request.module.__name__.encode()).hexdigest()[:6]
    name = f"essc_{run_id}_id{tag}"
    asyncio.run(create_databases([name]))
    url = async_url(name)
    try:
        upgrade(MIGRATIONS, url)
        yield url, keys
    finally:
        asyncio.run(drop_databases([name]))


@pytest_asyncio.fixture
async def harness(
    identity_db: tuple[str, Path], request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    url, keys = identity_db
    overrides: dict[str, Any] = getattr(request, "param", None) or {}
    settings = settings_for(url, keys, **overrides)
    app = create_app(settings)
    ring = gateway_ring()
    async with app.router.lifespan_context(app):
        install_gateway_ring(app, ring)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity.test") as http:
            yield Harness(app=app, http=http, ring=ring, settings=settings)
