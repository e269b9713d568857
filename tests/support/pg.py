"""The test PostgreSQL server: reachability, fresh databases per test run."""

from __future__ import annotations

import os
from collections.abc import Iterable

import asyncpg

PG_URL = os.environ.get("ESSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def server_url(url: str = PG_URL) -> str:
    """``postgresql://user@host:port`` without the database name."""
    return url.rsplit("/", 1)[0]


def async_url(name: str, url: str = PG_URL) -> str:
    """The SQLAlchemy asyncpg URL of database ``name`` on the test server."""
    return server_url(url).replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name


async def pg_reachable(url: str = PG_URL) -> bool:
    """True if a connection to ``url`` succeeds within two seconds."""
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def create_databases(names: Iterable[str], url: str = PG_URL) -> None:
    """(Re)create each database in ``names`` empty."""
    conn = await asyncpg.connect(url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(names: Iterable[str], url: str = PG_URL) -> None:
    """Drop each database in ``names``."""
    conn = await asyncpg.connect(url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
