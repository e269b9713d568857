"""The end of a service's lifespan: background loops stop, sessions and pools close; the
test-only slow route exists only in the ``test`` environment and never in OpenAPI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from settlement.config import SettlementSettings
from settlement.main import create_app
from shared.app import Runtime

pytestmark = pytest.mark.asyncio


def _settings(tmp_path: Path, environment: str = "test") -> SettlementSettings:
    return SettlementSettings(
        environment=environment,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/settlement.db",
        keys_dir=tmp_path / "keys",
        log_requests=False,
    )


async def test_lifespan_shutdown_stops_tasks_and_closes_pools(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    disposed: list[bool] = []
    started = asyncio.Event()

    async def relay_loop() -> None:  # stands in for an outbox relay
        started.set()
        await asyncio.Event().wait()

    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        runtime.spawn(relay_loop(), "outbox-relay")
        await started.wait()
        assert await runtime.db.ping()
        assert not runtime.draining
        real_dispose = runtime.db.dispose

        async def spy_dispose() -> None:
            disposed.append(True)
            await real_dispose()

        runtime.db.dispose = spy_dispose  # type: ignore[method-assign]
        tasks = list(runtime.tasks)
        assert {t.get_name() for t in tasks} >= {"key-reload", "outbox-relay"}

    assert runtime.draining
    assert all(t.cancelled() for t in tasks), [(t.get_name(), t.done()) for t in tasks]
    assert runtime.http.closed
    assert runtime.jwks_http.is_closed
    assert disposed == [True]
    assert runtime.db.engine.pool.checkedout() == 0


async def test_sleep_route_only_in_test_environment(tmp_path: Path) -> None:
    for environment, expected in (("test", 200), ("development", 404)):
        app = create_app(_settings(tmp_path / environment, environment))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                resp = await client.get("/internal/test/sleep", params={"seconds": "0.01"})
                assert resp.status_code == expected, (environment, resp.text)
                if expected == 200:
                    assert resp.json() == {"slept": 0.01}
                    too_long = await client.get("/internal/test/sleep", params={"seconds": "31"})
                    assert too_long.status_code == 422
                spec = (await client.get("/openapi.json")).json()
                assert "/internal/test/sleep" not in spec["paths"]
