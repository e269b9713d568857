"""The hand-written migrations build exactly the schema the models declare (both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from settlement import models  # noqa: F401  (registers the tables)
from settlement.db import Base

pytestmark = pytest.mark.asyncio


async def _diff(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_sqlite_schema_matches_the_models(sqlite_database: str) -> None:
    assert await _diff(sqlite_database) == []


@pytest.mark.postgres
async def test_postgres_schema_matches_the_models_and_has_the_triggers(pg_database: str) -> None:
    assert await _diff(pg_database) == []
    engine = create_async_engine(pg_database)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT tgname, tgdeferrable, tginitdeferred FROM pg_trigger "
                    "WHERE NOT tgisinternal ORDER BY tgname"
                )
            )
            triggers = {r.tgname: (r.tgdeferrable, r.tginitdeferred) for r in rows}
    finally:
        await engine.dispose()
    assert triggers["ledger_entry_balanced"] == (True, True)
    assert triggers["ledger_tx_has_legs"] == (True, True)
    for table in ("ledger_tx", "ledger_entry", "settlement", "refund"):
        assert f"{table}_immutable" in triggers
        assert f"{table}_no_truncate" in triggers
