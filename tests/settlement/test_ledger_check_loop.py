"""The periodic whole-ledger check keeps ``essc_ledger_imbalance`` true to the books."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text

from settlement.ledger.service import check_loop
from shared.db import Database, make_engine

pytestmark = pytest.mark.postgres


async def _until(registry: CollectorRegistry, value: float, timeout: float = 20.0) -> None:
    """Wait (a generous deadline) until the gauge reads ``value``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (now := registry.get_sample_value("essc_ledger_imbalance")) != value:
        assert asyncio.get_running_loop().time() < deadline, now
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_the_loop_sets_the_gauge_to_the_problems_found(pg_database: str) -> None:
    db = Database(make_engine(pg_database, pool_size=2, max_overflow=0))
    registry = CollectorRegistry()
    gauge = Gauge("essc_ledger_imbalance", "test", registry=registry)
    gauge.set(7)  # stale: the first check must overwrite it
    task = asyncio.create_task(check_loop(db, gauge, 0.05, lambda: datetime.now(UTC)))
    try:
        await _until(registry, 0)
        # A personal account whose stored balance no entry explains: one problem.
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO account (id, kind, owner_ref, region_code, balance_fen, "
                    "created_at) VALUES ('test:drift', 'personal', 'h_drift', '310000', 5, now())"
                )
            )
        await _until(registry, 1)
        async with db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM account WHERE id = 'test:drift'"))
        await _until(registry, 0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await db.dispose()
