"""ServiceClient's failover between replicas of a peer (real sockets on loopback)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from shared.http import ServiceClient, new_session

pytestmark = pytest.mark.asyncio


async def _replica(handler: web.RequestHandler) -> tuple[web.AppRunner, str]:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_replica_that_drops_the_connection_is_skipped_for_the_next() -> None:
    """A dead replica's pooled connection ends without an answer (ServerDisconnected):
    the call goes to the next replica instead of answering 502."""
    served: list[str] = []

    async def dropping(request: web.Request) -> web.StreamResponse:
        served.append("dropping")
        assert request.transport is not None
        request.transport.close()  # no answer at all
        await asyncio.sleep(0.1)
        return web.Response()

    async def healthy(request: web.Request) -> web.StreamResponse:
        served.append("healthy")
        return web.json_response({"ok": True})

    dead, dead_url = await _replica(dropping)
    live, live_url = await _replica(healthy)
    session = new_session()
    try:
        client = ServiceClient(
            base_url=f"{dead_url},{live_url}",
            target="peer",
            session=session,
            token_for=lambda _: "t",
        )
        status, body = await client.request("POST", "/internal/v1/x", json={"a": 1})
    finally:
        await session.close()
        await dead.cleanup()
        await live.cleanup()
    assert (status, body) == (200, {"ok": True})
    assert served == ["dropping", "healthy"]
