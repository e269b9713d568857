"""JwksCache against an in-process JWKS endpoint (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.tokens.claims import ACCESS, AccessTokenClaims
from shared.tokens.codec import InvalidTokenError, sign_token, verify_token_async
from shared.tokens.jwks import JwksCache, ec_public_key_from_jwk
from shared.tokens.keys import KeyRing

URL = "https://auth.essc.test/.well-known/jwks.json"
ClaimsFactory = Callable[..., dict[str, Any]]


class Endpoint:
    """A scriptable JWKS endpoint; ``mode`` picks the next answers."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.mode = "ok"
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        mode = self.mode
        if mode == "ok":
            return httpx.Response(200, json=self.doc)
        if mode == "500":
            return httpx.Response(500, text="down")
        if mode == "redirect":
            return httpx.Response(302, headers={"Location": "https://attacker.example/jwks"})
        if mode == "garbage":
            return httpx.Response(200, content=b"<html>not json</html>")
        if mode == "not a set":
            return httpx.Response(200, json={"kty": "EC"})
        if mode == "oversized":
            return httpx.Response(200, json={**self.doc, "pad": "x" * 70_000})
        if mode == "oversized stream":

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(100):
                    yield b" " * 1024

            return httpx.Response(200, content=chunks())
        if mode == "gzip":
            return httpx.Response(
                200,
                content=gzip.compress(json.dumps(self.doc).encode()),
                headers={"Content-Encoding": "gzip"},
            )
        if mode == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if mode == "timeout":
            await asyncio.sleep(5)
            return httpx.Response(200, json=self.doc)
        if mode == "foreign keys":
            rsa_jwk = RSAAlgorithm.to_jwk(
                rsa.generate_private_key(65537, 2048).public_key(), as_dict=True
            )
            p384 = ECAlgorithm.to_jwk(
                ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True
            )
            return httpx.Response(
                200, json={"keys": [{**rsa_jwk, "kid": "r"}, {**p384, "kid": "p"}]}
            )
        raise AssertionError(mode)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def endpoint(ring: KeyRing) -> Endpoint:
    return Endpoint(ring.jwks(["access", "internal"]))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def client(endpoint: Endpoint) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as c:
        yield c


def _cache(client: httpx.AsyncClient, clock: Clock, **kwargs: Any) -> JwksCache:
    return JwksCache(URL, client=client, clock=clock, **kwargs)


@pytest.mark.asyncio
async def test_one_fetch_serves_many_calls(
    client: httpx.AsyncClient, clock: Clock, ring: KeyRing
) -> None:
    cache = _cache(client, clock)
    access = ring.signing_key("access")
    for _ in range(50):
        assert await cache.get_key(access.kid) == access.public_key
    assert await cache.get_key(ring.signing_key("internal").kid) is not None
    assert cache.fetch_count == 1
    assert {k["kid"] for k in cache.jwks()["keys"]} == {
        k.kid for k in ring.keys if k.purpose in ("access", "internal")
    }


@pytest.mark.asyncio
async def test_ttl_refresh(client: httpx.AsyncClient, clock: Clock, ring: KeyRing) -> None:
    cache = _cache(client, clock, ttl=300)
    kid = ring.signing_key("access").kid
    await cache.get_key(kid)
    clock.now += 299
    await cache.get_key(kid)
    assert cache.fetch_count == 1
    clock.now += 1
    await cache.get_key(kid)
    assert cache.fetch_count == 2


@pytest.mark.asyncio
async def test_unknown_kids_are_rate_limited(
    client: httpx.AsyncClient, clock: Clock, ring: KeyRing, endpoint: Endpoint
) -> None:
    cache = _cache(client, clock, min_refresh_interval=10)
    await cache.get_key(ring.signing_key("access").kid)
    assert cache.fetch_count == 1
    clock.now += 10
    for _ in range(100):
        assert await cache.get_key(secrets.token_urlsafe(32)) is None
        clock.now += 0.05  # 100 kids within 5 s < interval
    assert cache.fetch_count == 2  # at most one extra fetch
    assert endpoint.calls == 2

    # After the interval a rotated-in key is found by a forced refresh.
    qr = ring.signing_key("qr")
    endpoint.doc = ring.jwks(["access", "qr"])
    clock.now += 10
    assert await cache.get_key(qr.kid) == qr.public_key
    assert cache.fetch_count == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("500", "HTTP 500"),
        ("redirect", "HTTP 302"),
        ("garbage", "invalid JSON"),
        ("not a set", "not a JWK set"),
        ("oversized", "too large"),
        ("oversized stream", "too large"),
        ("gzip", "content encoding"),
        ("connect", "ConnectError"),
        ("timeout", "timed out"),
        ("foreign keys", "no usable ES256 keys"),
    ],
)
async def test_failures_keep_the_last_good_set(
    client: httpx.AsyncClient,
    clock: Clock,
    ring: KeyRing,
    endpoint: Endpoint,
    mode: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = _cache(client, clock, timeout=0.05, max_bytes=65536)
    kid = ring.signing_key("access").kid
    assert await cache.get_key(kid) is not None
    published = cache.jwks()

    endpoint.mode = mode
    clock.now += 301
    with caplog.at_level(logging.WARNING, logger="shared.tokens.jwks"):
        assert await cache.refresh() is False
        assert await cache.get_key(kid) is not None  # stale but last good
    assert cache.fetch_count == 2  # the failed attempt is rate-limited too
    assert cache.jwks() == published
    assert any("JWKS fetch" in r.getMessage() and reason in r.getMessage() for r in caplog.records)

    endpoint.mode = "ok"
    clock.now += 10
    assert await cache.get_key(kid) is not None
    assert cache.fetch_count == 3


@pytest.mark.asyncio
async def test_first_fetch_failure_then_recovery(
    client: httpx.AsyncClient, clock: Clock, ring: KeyRing, endpoint: Endpoint
) -> None:
    cache = _cache(client, clock)
    endpoint.mode = "500"
    kid = ring.signing_key("access").kid
    assert await cache.get_key(kid) is None
    assert await cache.get_key(kid) is None
    assert cache.fetch_count == 1  # a dead endpoint is not hammered
    assert cache.jwks() == {"keys": []}
    endpoint.mode = "ok"
    clock.now += 10
    assert await cache.get_key(kid) is not None


@pytest.mark.asyncio
async def test_concurrent_callers_share_one_fetch(
    client: httpx.AsyncClient, clock: Clock, ring: KeyRing, endpoint: Endpoint
) -> None:
    cache = _cache(client, clock)
    endpoint.gate = asyncio.Event()
    kid = ring.signing_key("access").kid
    tasks = [asyncio.create_task(cache.get_key(kid)) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0)
    tasks[0].cancel()  # a cancelled caller does not cancel the shared fetch
    endpoint.gate.set()
    results = await asyncio.gather(*tasks[1:])
    assert all(r == ring.signing_key("access").public_key for r in results)
    assert cache.fetch_count == 1
    assert endpoint.calls == 1


@pytest.mark.asyncio
async def test_verify_token_async_with_jwks_cache(
    client: httpx.AsyncClient,
    clock: Clock,
    ring: KeyRing,
    endpoint: Endpoint,
    claims_for: ClaimsFactory,
    now: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = _cache(client, clock)
    token = sign_token(
        ACCESS,
        AccessTokenClaims.model_validate(claims_for(ACCESS)),
        ring.signing_key("access"),
    )
    kwargs: dict[str, Any] = {
        "issuer": "https://auth.essc.test",
        "audience": "https://gateway.essc.test",
        "now": now,
    }
    assert (await verify_token_async(token, ACCESS, keys=cache, **kwargs)).iat == now
    # A bad header never causes a fetch; a failing endpoint never logs the token.
    with pytest.raises(InvalidTokenError):
        await verify_token_async("a.b.c", ACCESS, keys=cache, **kwargs)
    endpoint.mode = "500"
    clock.now += 400
    with caplog.at_level(logging.DEBUG):
        assert (await verify_token_async(token, ACCESS, keys=cache, **kwargs)).iat == now
    assert cache.fetch_count == 2
    assert caplog.records
    assert not any(part in r.getMessage() for r in caplog.records for part in token.split("."))


def test_jwk_parsing_accepts_only_public_p256_signing_keys(ring: KeyRing, now_dt: datetime) -> None:
    good = ring.jwks(["access"])["keys"][0]
    parsed = ec_public_key_from_jwk(good)
    assert parsed is not None
    assert parsed[0] == good["kid"]
    bad_variants: list[Any] = [
        {**good, "crv": "P-384"},
        {**good, "kty": "RSA"},
        {**good, "alg": "ES384"},
        {**good, "alg": "HS256"},
        {**good, "use": "enc"},
        {**good, "d": "AAAA"},
        {k: v for k, v in good.items() if k != "kid"},
        {**good, "kid": "../../etc/passwd"},
        {**good, "x": good["x"][:-1]},
        {**good, "y": good["x"]},  # not on the curve
        {**good, "x": 5},
        "not a dict",
    ]
    assert [ec_public_key_from_jwk(v) for v in bad_variants] == [None] * len(bad_variants)


@pytest.mark.asyncio
async def test_replicas_are_tried_in_turn(endpoint: Endpoint, clock: Clock, ring: KeyRing) -> None:
    """Every replica of the publisher serves the same set: a dead first one costs nothing."""
    dead, alive = "http://10.0.0.1:8001/jwks.json", "http://10.0.0.2:8001/jwks.json"
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if str(request.url) == dead:
            raise httpx.ConnectError("connection refused", request=request)
        return await endpoint(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        cache = JwksCache([dead, alive], client=client, clock=clock)
        access = ring.signing_key("access")
        assert await cache.get_key(access.kid) == access.public_key
        assert seen == [dead, alive]
        endpoint.mode = "500"  # every replica failing: the last good set is kept
        clock.now += 1000
        assert await cache.get_key(access.kid) == access.public_key
    assert cache.fetch_count == 2
