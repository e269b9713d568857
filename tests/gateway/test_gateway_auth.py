"""The gateway as the authenticated door, in process, in front of a stub upstream on real TCP.

The stub plays the three upstreams' HTTP surface (JWKS, the disabled-clients list, OpenAPI
documents, and an echo of what it received) so that these unit tests can look at exactly what
the gateway sends upstream. The end-to-end tests exercise the real services.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from gateway.config import GatewaySettings
from gateway.main import create_app
from gateway.routes import ROUTES
from shared.tokens.claims import ACCESS, INTERNAL, AccessTokenClaims, ClientKind
from shared.tokens.codec import sign_token, verify_token
from shared.tokens.keys import KeyRing, KeyStore
from shared.tokens.negative import negative_tokens

pytestmark = pytest.mark.asyncio

ISSUER = "http://gateway.test"
KIND_SCOPES = {
    ClientKind.PARTNER_APP: "ecard:issue ecard:manage ecard:qr holder:enquiry",
    ClientKind.HOSPITAL: "scan settlement:write settlement:read reconciliation",
    ClientKind.SCANNER: "scan",
    ClientKind.OPS: "ops",
}


@dataclass
class Stub:
    """A stand-in upstream: serves identity's JWKS and records what reaches it."""

    ring: KeyRing
    disabled: list[str] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    up: bool = True
    delay: float = 0.0
    url: str = ""
    rotations: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/.well-known/jwks.json":
            return web.json_response(self.ring.jwks(["access"]))
        if path == "/internal/v1/clients/disabled":
            return web.json_response({"client_ids": self.disabled})
        if path == "/readyz":
            return web.json_response({"status": "ready"})
        if path == "/internal/v1/keys/rotate":
            self.rotations += 1
            body = await request.json()
            return web.json_response(
                {
                    "service": "stub",
                    "purpose": body["purpose"],
                    "current_kid": f"k{self.rotations}",
                    "next_kid": f"k{self.rotations + 1}",
                    "previous_kids": [],
                    "previous_retire_at": None,
                }
            )
        if path == "/openapi.json":
            return web.json_response(
                {
                    "openapi": "3.1.0",
                    "paths": {
                        "/v1/scans": {
                            "post": {
                                "summary": "Scan",
                                "responses": {
                                    "201": {
                                        "description": "ok",
                                        "content": {
                                            "application/json": {
                                                "schema": {"$ref": "#/components/schemas/ScanRead"}
                                            }
                                        },
                                    }
                                },
                            }
                        },
                        "/internal/v1/secret": {"get": {"summary": "never public"}},
                    },
                    "components": {"schemas": {"ScanRead": {"type": "object"}}},
                }
            )
        if not self.up:  # a dead service: the connection drops without an answer
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError
        if self.delay:
            await asyncio.sleep(self.delay)
        self.seen.append(
            {
                "path": path,
                "method": request.method,
                "authorization": request.headers.get("Authorization"),
                "x-client": request.headers.get("X-Client-Id"),
                "request_id": request.headers.get("X-Request-ID"),
                "body": await request.read(),
            }
        )
        return web.json_response({"ok": True, "path": path}, status=200)


@pytest_asyncio.fixture
async def stub(tmp_path: Path) -> AsyncIterator[Stub]:
    ring = KeyRing.generate(["access"], datetime.now(UTC))
    s = Stub(ring)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    s.url = f"http://127.0.0.1:{port}"
    try:
        yield s
    finally:
        await runner.cleanup()


def settings_for(stub: Stub, tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "keys_dir": tmp_path / "gw-keys",
        "environment": "test",
        "public_issuer": ISSUER,
        "identity_url": stub.url,
        "issuance_url": stub.url,
        "settlement_url": stub.url,
        "disabled_clients_poll_seconds": 0.05,
        "jwks_min_refresh_seconds": 0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest_asyncio.fixture
async def make_gateway(stub: Stub, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    stack: list[Any] = []

    async def start(**overrides: Any) -> httpx.AsyncClient:
        app = create_app(settings_for(stub, tmp_path, **overrides))
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        stack.append((ctx, client))
        return client

    yield start
    for ctx, client in reversed(stack):
        await client.aclose()
        await ctx.__aexit__(None, None, None)


def access_token(
    stub: Stub,
    kind: ClientKind,
    *,
    scope: str | None = None,
    client_id: str | None = None,
    **extra: Any,
) -> str:
    now = int(time.time())
    claims = AccessTokenClaims(
        iss=ISSUER,
        aud="urn:essc:api",
        sub=client_id or f"c-{kind.value}",
        client_id=client_id or f"c-{kind.value}",
        kind=kind,
        scope=KIND_SCOPES[kind] if scope is None else scope,
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(8),
        **extra,
    )
    return sign_token(ACCESS, claims, stub.ring.signing_key("access"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def concrete(template: str) -> str:
    return template.replace("{", "x").replace("}", "")


async def test_missing_and_malformed_credentials_are_401(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    resp = await gw.post("/v1/scans", json={})
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert (await gw.post("/v1/scans", headers={"Authorization": "Basic abc"})).status_code == 401
    assert (await gw.post("/v1/scans", headers=bearer("not.a.token"))).status_code == 401
    assert stub.seen == []


async def test_forwarded_with_an_internal_token_for_that_service(
    stub: Stub, make_gateway: Any, tmp_path: Path
) -> None:
    gw = await make_gateway()
    token = access_token(stub, ClientKind.HOSPITAL, region_code="310000", level=3)
    resp = await gw.post(
        "/v1/scans",
        json={"qr_token": "x"},
        headers={**bearer(token), "X-Request-ID": "rid-7", "X-Client-Id": "forged-ops"},
    )
    assert resp.status_code == 200
    assert resp.json() == {"ok": True, "path": "/v1/scans"}
    seen = stub.seen[-1]
    assert seen["x-client"] is None  # unlisted headers never cross
    assert seen["request_id"] == "rid-7"
    upstream = seen["authorization"].removeprefix("Bearer ")
    assert upstream != token
    ring = KeyStore(tmp_path / "gw-keys").load()
    claims = verify_token(
        upstream,
        INTERNAL,
        key_for_kid=ring.public_key,
        issuer="urn:essc:gateway",
        audience="urn:essc:issuance",
    )
    assert claims.client_id == "c-hospital"
    assert claims.kind is ClientKind.HOSPITAL
    assert claims.region_code == "310000"
    assert claims.level == 3
    # The same internal token is not valid for another service.
    with pytest.raises(Exception, match="audience"):
        verify_token(
            upstream,
            INTERNAL,
            key_for_kid=ring.public_key,
            issuer="urn:essc:gateway",
            audience="urn:essc:settlement",
        )


async def test_scope_and_kind_matrix(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    tokens = {kind: access_token(stub, kind) for kind in KIND_SCOPES}
    checked = 0
    for route in ROUTES:
        if route.public:
            continue
        path = concrete(route.template)
        no_token = await gw.request(route.method, path)
        assert no_token.status_code == 401, route.template
        for kind, token in tokens.items():
            resp = await gw.request(route.method, path, headers=bearer(token))
            if kind in route.kinds:
                # Forwarded (the stub echoes 200) or answered by the gateway itself after
                # authorisation (e.g. 422 for an empty key-rotation body): never 401/403.
                expected = 200 if route.upstream != "gateway" else 422
                assert resp.status_code == expected, (route.template, kind)
            else:
                assert resp.status_code == 403, (route.template, kind)
                assert resp.json()["detail"] == "This client kind may not use this operation."
            checked += 1
        if not route.scopes:
            continue
        # The right kind without the route's scope is refused too.
        kind = next(iter(route.kinds))
        others = " ".join(sorted(set(KIND_SCOPES[kind].split()) - route.scopes)) or "none"
        resp = await gw.request(
            route.method, path, headers=bearer(access_token(stub, kind, scope=others))
        )
        assert resp.status_code == 403, route.template
        assert resp.json()["detail"].startswith("Missing scope")
    assert checked == 4 * sum(1 for r in ROUTES if not r.public)


async def test_every_negative_token_is_refused(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    now = int(time.time())
    good = {
        "sub": "c-ops",
        "client_id": "c-ops",
        "kind": "ops",
        "scope": "ops",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
    }
    cases = negative_tokens(
        kind=ACCESS,
        good_claims=good,
        signing_key=stub.ring.signing_key("access"),
        issuer=ISSUER,
        audience="urn:essc:api",
    )
    # Tokens an HTTP header cannot carry (non-ASCII, newlines) are the library tests' concern.
    sendable = [(n, t) for n, t in cases if all(32 <= ord(c) < 127 for c in t)]
    assert len(sendable) > 50
    for name, token in sendable:
        resp = await gw.get("/v1/admin/sms-outbox", headers=bearer(token))
        assert resp.status_code == 401, name
        assert resp.headers["content-type"] == "application/problem+json", name
    assert stub.seen == []


async def test_disabled_client_stops_within_seconds(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    token = access_token(stub, ClientKind.SCANNER, client_id="scanner-9")
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    stub.disabled.append("scanner-9")
    deadline = time.monotonic() + 3
    status = 200
    while time.monotonic() < deadline and status == 200:
        await asyncio.sleep(0.05)
        status = (await gw.post("/v1/scans", headers=bearer(token))).status_code
    assert status == 401


async def test_rate_limit_per_client(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway(rate_limit_client="3/minute")
    a = access_token(stub, ClientKind.SCANNER, client_id="scanner-a")
    b = access_token(stub, ClientKind.SCANNER, client_id="scanner-b")
    statuses = [(await gw.post("/v1/scans", headers=bearer(a))).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await gw.post("/v1/scans", headers=bearer(a))
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"] == "application/problem+json"
    assert (await gw.post("/v1/scans", headers=bearer(b))).status_code == 200


async def test_verified_tokens_are_cached(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    token = access_token(stub, ClientKind.SCANNER)
    for _ in range(5):
        assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    metrics = (await gw.get("/metrics")).text
    assert 'essc_gateway_token_cache_total{result="miss"} 1.0' in metrics
    assert 'essc_gateway_token_cache_total{result="hit"} 4.0' in metrics


async def test_merged_openapi_is_the_route_inventory(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway()
    doc = (await gw.get("/openapi.json")).json()
    public_paths = {r.template for r in ROUTES}
    assert set(doc["paths"]) == public_paths
    assert "/internal/v1/secret" not in doc["paths"]
    scan = doc["paths"]["/v1/scans"]["post"]
    assert scan["summary"] == "Scan"
    assert scan["security"] == [{"oauth2": ["scan"]}]
    assert {"401", "403", "429", "502", "503", "504"} <= set(scan["responses"])
    assert (
        doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"]
        == ISSUER + "/oauth/token"
    )
    assert doc["paths"]["/oauth/token"]["post"]["security"] == []
    assert (await gw.get("/docs")).status_code == 200


async def test_breaker_opens_then_closes(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway(breaker_failure_threshold=2, breaker_open_seconds=0.5)
    token = access_token(stub, ClientKind.SCANNER)
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    stub.up = False
    first = [(await gw.post("/v1/scans", headers=bearer(token))).status_code for _ in range(2)]
    assert first == [502, 502]
    started = time.monotonic()
    fast = await gw.post("/v1/scans", headers=bearer(token))
    assert fast.status_code == 503
    assert fast.headers["retry-after"] == "5"
    assert time.monotonic() - started < 0.5
    # The metrics show it: the dropped connections, the refusal, the open breaker.
    metrics = (await gw.get("/metrics")).text
    assert 'essc_gateway_upstream_errors_total{kind="connection",upstream="issuance"} 2.0' in (
        metrics
    )
    assert 'essc_gateway_upstream_errors_total{kind="breaker_open",upstream="issuance"} 1.0' in (
        metrics
    )
    assert 'essc_gateway_breaker_state{upstream="issuance"} 2.0' in metrics
    assert 'essc_gateway_breaker_state{upstream="settlement"} 0.0' in metrics
    stub.up = True
    await asyncio.sleep(0.6)
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    assert 'essc_gateway_breaker_state{upstream="issuance"} 0.0' in (await gw.get("/metrics")).text


async def test_upstream_deadline_is_504_within_the_deadline(stub: Stub, make_gateway: Any) -> None:
    gw = await make_gateway(upstream_timeout_seconds=0.3)
    token = access_token(stub, ClientKind.SCANNER)
    stub.delay = 2.0
    started = time.monotonic()
    resp = await gw.post("/v1/scans", headers=bearer(token))
    assert resp.status_code == 504
    assert resp.json()["detail"] == "The issuance service did not answer in time."
    assert time.monotonic() - started < 1.5
    metrics = (await gw.get("/metrics")).text
    assert 'essc_gateway_upstream_errors_total{kind="timeout",upstream="issuance"} 1.0' in metrics


async def test_dead_replica_is_skipped(stub: Stub, make_gateway: Any) -> None:
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    gw = await make_gateway(issuance_url=f"{dead},{stub.url}")
    token = access_token(stub, ClientKind.SCANNER)
    statuses = [(await gw.post("/v1/scans", headers=bearer(token))).status_code for _ in range(6)]
    assert statuses == [200] * 6


async def test_a_dead_first_identity_replica_stops_neither_tokens_nor_revocation(
    stub: Stub, make_gateway: Any
) -> None:
    """Identity's keys and its disabled list are in its database, so any replica serves them:
    with the first listed replica dead, tokens still verify and a disabled client still stops."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    gw = await make_gateway(identity_url=f"{dead},{stub.url}")
    token = access_token(stub, ClientKind.SCANNER, client_id="scanner-7")
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200
    stub.disabled.append("scanner-7")
    deadline = time.monotonic() + 3
    status = 200
    while time.monotonic() < deadline and status == 200:
        await asyncio.sleep(0.05)
        status = (await gw.post("/v1/scans", headers=bearer(token))).status_code
    assert status == 401
    assert (await gw.get("/.well-known/jwks.json")).json()["keys"]


async def test_an_abandoned_trial_does_not_keep_a_replica_out(
    stub: Stub, make_gateway: Any
) -> None:
    """The half-open trial request's client goes away mid-request: the trial slot is freed,
    so the recovered replica is tried again and serves (no 503 for ever after)."""
    gw = await make_gateway(breaker_failure_threshold=2, breaker_open_seconds=0.3)
    token = access_token(stub, ClientKind.SCANNER)
    stub.up = False
    assert [(await gw.post("/v1/scans", headers=bearer(token))).status_code for _ in range(2)] == [
        502,
        502,
    ]
    stub.up, stub.delay = True, 1.0
    await asyncio.sleep(0.4)  # half-open: the next request is the trial
    trial = asyncio.create_task(gw.post("/v1/scans", headers=bearer(token)))
    await asyncio.sleep(0.2)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    stub.delay = 0.0
    assert (await gw.post("/v1/scans", headers=bearer(token))).status_code == 200


async def test_rotation_skips_a_dead_first_replica_and_rotates_once(
    stub: Stub, make_gateway: Any
) -> None:
    """Replicas share their key store: one live replica rotates it, exactly once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    gw = await make_gateway(issuance_url=f"{dead},{stub.url}")
    ops = access_token(stub, ClientKind.OPS)
    resp = await gw.post("/v1/admin/keys/rotate", json={"purpose": "qr"}, headers=bearer(ops))
    assert resp.status_code == 200, resp.text
    assert [r["current_kid"] for r in resp.json()["rotated"]] == ["k1"]
    assert stub.rotations == 1
