"""A client's jwks_uri is fetched under the SSRF rules: https, public address, no redirect,
bounded size and time; plain http/loopback only when the test setting allows it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from identity.clients.jwks_fetch import JwksFetcher, JwksFetchError
from support.identity import ClientKey, Harness

pytestmark = pytest.mark.asyncio

KEY = ClientKey.new()


@pytest_asyncio.fixture
async def jwks_server() -> AsyncIterator[str]:
    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(KEY.jwks)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/jwks.json")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"keys": [], "pad": "x" * 200_000}))

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(KEY.jwks)

    app = web.Application()
    app.add_routes(
        [
            web.get("/jwks.json", jwks),
            web.get("/redirect", redirect),
            web.get("/huge", huge),
            web.get("/slow", slow),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_registered_jwks_uri_authenticates_the_client(
    harness: Harness, jwks_server: str
) -> None:
    created = await harness.register(
        kind="partner_app", name="Remote keys", jwks_uri=jwks_server + "/jwks.json"
    )
    resp = await harness.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": KEY.assertion(created["client_id"]),
        },
    )
    assert resp.status_code == 200, resp.text


async def test_fetch_rules(jwks_server: str) -> None:
    loose = JwksFetcher(allow_insecure=True, timeout=0.3, max_bytes=65_536)
    assert (await loose.fetch(jwks_server + "/jwks.json"))["keys"][0]["kid"] == KEY.key.kid
    for path, reason in (("/redirect", "HTTP 302"), ("/huge", "too large"), ("/slow", "in time")):
        with pytest.raises(JwksFetchError, match=reason):
            await loose.fetch(jwks_server + path)
    strict = JwksFetcher(allow_insecure=False, timeout=0.3, max_bytes=65_536)
    for uri, reason in (
        (jwks_server + "/jwks.json", "https"),
        ("https://127.0.0.1/jwks.json", "non-public"),
        ("https://169.254.169.254/latest", "non-public"),
        ("https://[::1]/jwks.json", "non-public"),
        ("https://user:pw@example.com/jwks.json", "credentials"),
        ("https://localhost:1/jwks.json", "non-public"),
    ):
        with pytest.raises(JwksFetchError, match=reason):
            await strict.fetch(uri)
