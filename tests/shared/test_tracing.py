"""Tracing: a request through a real service app yields a server span, a database span and
a client span whose context reaches the next service; with tracing off nothing is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from fastapi import APIRouter, Request
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from settlement.config import SettlementSettings
from settlement.main import create_app
from shared.app import Runtime
from shared.tracing import use_tracer_provider


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    use_tracer_provider(provider)
    try:
        yield spans
    finally:
        use_tracer_provider(None)
        provider.shutdown()


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in for the next service: records the headers of each request it gets."""
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/internal/v1/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _probe_router() -> APIRouter:
    router = APIRouter()

    @router.get("/probe/{item_id}")
    async def probe(item_id: str, request: Request) -> dict[str, object]:
        runtime: Runtime = request.app.state.runtime
        async with runtime.db.engine.connect() as conn:
            one = (await conn.execute(text("SELECT 1"))).scalar_one()
        _, body = await runtime.client("identity").request("GET", "/internal/v1/echo")
        return {"db": one, "peer": body, "item": item_id}

    return router


@pytest.mark.asyncio
async def test_request_yields_server_db_and_client_spans_with_propagation(
    exporter: InMemorySpanExporter,
    peer: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    peer_url, seen = peer
    settings = SettlementSettings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/settlement.db",
        keys_dir=tmp_path / "keys",
        identity_url=peer_url,
        log_requests=False,
    )
    app = create_app(settings)
    app.include_router(_probe_router())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            resp = await client.get("/probe/42")
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"db": 1, "peer": {"ok": True}, "item": "42"}
            assert (await client.get("/livez")).status_code == 200

    spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in spans]  # /livez is not traced
    server = servers[0]
    assert server.attributes is not None
    assert server.attributes.get("http.route") == "/probe/{item_id}"  # template, not the id
    assert "42" not in server.name
    trace_id = server.context.trace_id

    db_spans = [
        s
        for s in spans
        if s.attributes is not None and s.attributes.get("db.system") in {"sqlite", "postgresql"}
    ]
    assert db_spans, [s.name for s in spans]
    assert all(s.context.trace_id == trace_id for s in db_spans)
    assert any("SELECT" in s.name for s in db_spans)

    clients = [s for s in spans if s.kind is SpanKind.CLIENT and s not in db_spans]
    assert len(clients) == 1, [s.name for s in spans]
    assert clients[0].context.trace_id == trace_id

    # The next service received the trace context: traceparent = 00-<trace id>-<span id>-01.
    assert len(seen) == 1
    traceparent = seen[0].get("traceparent") or seen[0].get("Traceparent")
    assert traceparent is not None, seen[0]
    version, tp_trace, tp_span, _flags = traceparent.split("-")
    assert version == "00"
    assert int(tp_trace, 16) == trace_id
    assert int(tp_span, 16) == clients[0].context.span_id


@pytest.mark.asyncio
async def test_tracing_off_adds_no_middleware(tmp_path: Path) -> None:
    use_tracer_provider(None)
    app = create_app(
        SettlementSettings(
            environment="test",
            database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db",
            keys_dir=tmp_path / "keys",
        )
    )
    assert not [m for m in app.user_middleware if "opentelemetry" in repr(m.cls)]


def test_tracing_off_imports_no_sdk_or_instrumentation(tmp_path: Path) -> None:
    """Zero cost when off: building and serving an app never loads the SDK or instrumentors."""
    code = f"""
import asyncio, sys
import httpx
from settlement.config import SettlementSettings
from settlement.main import create_app

async def main():
    app = create_app(SettlementSettings(environment="test",
        database_url="sqlite+aiosqlite:///{tmp_path}/off.db", keys_dir="{tmp_path}/keys"))
    async with app.router.lifespan_context(app):
        t = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=t, base_url="http://svc") as c:
            assert (await c.get("/readyz")).status_code == 200
    loaded = sorted(m for m in sys.modules
                    if m.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation")))
    print("LOADED=" + ",".join(loaded))

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    marker = [line for line in out.stdout.splitlines() if line.startswith("LOADED=")]
    assert marker == ["LOADED="], marker
