"""The gateway's app factory: the forwarding path in front of a small FastAPI app of its own.

The gateway holds no business rules and no database. Its own routes are
health (``/livez``, ``/readyz`` aggregating the upstreams), ``/metrics``, the
merged public OpenAPI (``/openapi.json``, ``/docs``), the merged public JWKS and
its internal JWKS (the keys it signs upstream credentials with); everything in
:mod:`gateway.routes` is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp

from gateway.auth import ClientAuthenticator, RateLimiter
from gateway.config import GatewaySettings
from gateway.keys import keys_router
from gateway.openapi import merge
from gateway.proxy import Authenticator, Forwarder
from gateway.routes import RouteTable
from gateway.upstreams import UpstreamPool, split_urls
from shared.app import health_router, install_drain_on_sigterm
from shared.asgi import RequestContextMiddleware
from shared.auth import ServiceTokenMinter
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.problems import install_problem_handlers, problem_response
from shared.tokens.jwks import JwksCache
from shared.tokens.keys import KeyRing, KeyStore
from shared.tracing import instrument_aiohttp, instrument_asgi

logger = logging.getLogger("gateway")

UPSTREAMS = ("identity", "issuance", "settlement")
KEY_PURPOSES = ("internal",)


@dataclass
class GatewayRuntime:
    """The live parts of the gateway process."""

    settings: GatewaySettings
    ring: KeyRing
    keystore: KeyStore
    upstreams: dict[str, UpstreamPool]
    jwks_http: httpx.AsyncClient
    public_jwks: dict[str, JwksCache]
    authenticator: Authenticator
    minter: ServiceTokenMinter
    disabled_clients: frozenset[str] = frozenset()
    draining: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    openapi: dict[str, Any] | None = None
    openapi_at: float = 0.0


class GatewayApp(FastAPI):
    """FastAPI behind the forwarder, both behind the request-context layer."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        settings: GatewaySettings = self.state.settings
        forwarder = Forwarder(
            inner,
            table=self.state.route_table,
            upstreams=lambda: self.state.runtime.upstreams,
            authenticator=lambda: self.state.runtime.authenticator,
            timeout=aiohttp.ClientTimeout(
                total=settings.upstream_timeout_seconds,
                sock_connect=settings.upstream_connect_timeout_seconds,
            ),
            on_upstream_error=self.state.count_upstream_error,
        )
        stack = RequestContextMiddleware(
            forwarder,
            metrics=self.state.metrics,
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            log_requests=settings.log_requests,
        )
        # Server spans, outermost; the stack itself when tracing is off (shared.tracing).
        return instrument_asgi(stack, "gateway")


async def _fetch_json(
    pool: UpstreamPool, path: str, timeout: float, headers: dict[str, str] | None = None
) -> Any:
    """GET ``path`` from the first replica that answers 200 (None if none does).

    Replicas in the pool's order of preference (:meth:`UpstreamPool.failover_order`), so
    that one dead replica, the first listed included, costs a refused connection, not the
    answer: the disabled-clients list and the merged OpenAPI must not hang on one process.
    """
    for replica in pool.failover_order():
        try:
            async with pool.session.get(
                replica.base_url + path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status == 200:
                    return await resp.json()
        except Exception as exc:
            logger.warning("GET %s from %s failed: %s", path, pool.name, type(exc).__name__)
    return None


async def _upstream_ready(pool: UpstreamPool, timeout: float) -> bool:
    async def one(url: str) -> bool:
        try:
            async with pool.session.get(
                url + "/readyz", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return resp.status == 200
        except Exception:
            return False

    results = await asyncio.gather(*(one(r.base_url) for r in pool.replicas))
    return any(results)


async def _poll_disabled_clients(runtime: GatewayRuntime) -> None:
    """Keep the set of disabled clients fresh (last good set kept when identity is down).

    Any identity replica will do: the list is identity's database, not a process's memory.
    """
    pool = runtime.upstreams["identity"]
    while True:
        try:
            token = runtime.minter.token_for("identity")
            body = await _fetch_json(
                pool,
                "/internal/v1/clients/disabled",
                2.0,
                headers={"Authorization": f"Bearer {token}"},
            )
            if isinstance(body, dict) and isinstance(body.get("client_ids"), list):
                runtime.disabled_clients = frozenset(str(i) for i in body["client_ids"])
            else:
                logger.warning("disabled-clients refresh failed on every identity replica")
        except Exception as exc:
            logger.warning("disabled-clients refresh failed: %s", type(exc).__name__)
        await asyncio.sleep(runtime.settings.disabled_clients_poll_seconds)


def _redis_storage(url: str | None) -> str:
    if not url:
        return "async+memory://"
    return "async+" + url if not url.startswith("async+") else url


def _own_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/.well-known/jwks.json")
    async def public_jwks(request: Request) -> Response:
        """Every public key that signs access tokens, identity assertions, credentials, QR codes."""
        runtime: GatewayRuntime = request.app.state.runtime
        keys: list[dict[str, Any]] = []
        for cache in runtime.public_jwks.values():
            await cache.refresh()
            keys.extend(cache.jwks().get("keys", []))
        return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/internal/jwks.json")
    async def internal_jwks(request: Request) -> Response:
        runtime: GatewayRuntime = request.app.state.runtime
        return JSONResponse(runtime.ring.jwks(), headers={"Cache-Control": "max-age=60"})

    @router.get("/openapi.json")
    async def openapi(request: Request) -> Response:
        """The merged public OpenAPI document (the contract partner apps code against)."""
        runtime: GatewayRuntime = request.app.state.runtime
        settings = runtime.settings
        fresh = time.monotonic() - runtime.openapi_at < settings.openapi_cache_seconds
        if runtime.openapi is None or not fresh:
            docs = await asyncio.gather(
                *(_fetch_json(runtime.upstreams[n], "/openapi.json", 2.0) for n in UPSTREAMS)
            )
            complete = all(d is not None for d in docs)
            merged_docs = dict(zip(UPSTREAMS, docs, strict=True))
            merged_docs["gateway"] = request.app.openapi()
            runtime.openapi = merge(merged_docs, public_issuer=settings.public_issuer)
            runtime.openapi_at = time.monotonic() if complete else 0.0
        return JSONResponse(runtime.openapi)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="e-SSC public API")

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        runtime: GatewayRuntime | None = getattr(request.app.state, "runtime", None)
        m: Metrics = request.app.state.metrics
        if runtime is not None:
            for name, pool in runtime.upstreams.items():
                request.app.state.breaker_gauge.labels(name).set(int(pool.state()))
        return Response(m.render(), media_type=m.content_type)

    return router


def create_app(settings: GatewaySettings, *, authenticator: Authenticator | None = None) -> FastAPI:
    """Build the gateway; connections and keys are opened by its lifespan."""
    configure_logging("gateway", settings.log_level)
    instrument_aiohttp("gateway")  # no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    metrics = Metrics("gateway")
    upstream_errors = metrics.counter(
        "essc_gateway_upstream_errors_total",
        "Upstream failures by upstream and kind.",
        ["upstream", "kind"],
    )
    token_cache = metrics.counter(
        "essc_gateway_token_cache_total",
        "Access-token verifications by cache result.",
        ["result"],
    )
    cache_hit, cache_miss = token_cache.labels("hit"), token_cache.labels("miss")
    breaker_gauge = metrics.gauge(
        "essc_gateway_breaker_state",
        "Circuit state per upstream: 0 closed, 1 half-open (some replicas open or on "
        "trial), 2 open (every replica).",
        ["upstream"],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keystore = KeyStore(settings.keys_dir)
        if settings.is_production:
            ring = await asyncio.to_thread(keystore.load)
        else:
            ring = await asyncio.to_thread(keystore.ensure, KEY_PURPOSES)
        upstreams: dict[str, UpstreamPool] = {}
        for name in UPSTREAMS:
            connector = aiohttp.TCPConnector(
                limit=settings.upstream_pool_size, keepalive_timeout=30, ttl_dns_cache=60
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            upstreams[name] = UpstreamPool.create(
                name,
                split_urls(str(getattr(settings, f"{name}_url"))),
                session,
                failure_threshold=settings.breaker_failure_threshold,
                open_seconds=settings.breaker_open_seconds,
            )
        jwks_http = httpx.AsyncClient(timeout=2.0, follow_redirects=False)
        public_jwks = {
            name: JwksCache(
                [r.base_url + "/.well-known/jwks.json" for r in upstreams[name].replicas],
                client=jwks_http,
                ttl=settings.jwks_cache_seconds,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
            )
            for name in ("identity", "issuance")
        }
        box: list[GatewayRuntime] = []
        minter = ServiceTokenMinter(service="gateway", ring_getter=lambda: box[0].ring)
        limiter = RateLimiter(
            _redis_storage(settings.redis_url),
            client_rule=settings.rate_limit_client,
            public_rule=settings.rate_limit_public,
        )
        auth = authenticator or ClientAuthenticator(
            issuer=settings.public_issuer,
            keys=public_jwks["identity"],
            ring=lambda: box[0].ring,
            limiter=limiter,
            disabled=lambda: box[0].disabled_clients,
            on_cache=lambda hit: (cache_hit if hit else cache_miss).inc(),
        )
        runtime = GatewayRuntime(
            settings=settings,
            ring=ring,
            keystore=keystore,
            upstreams=upstreams,
            jwks_http=jwks_http,
            public_jwks=public_jwks,
            authenticator=auth,
            minter=minter,
        )
        box.append(runtime)
        app.state.runtime = runtime
        runtime.tasks.append(asyncio.create_task(_poll_disabled_clients(runtime)))
        runtime.tasks.append(asyncio.create_task(_reload_keys(runtime)))
        install_drain_on_sigterm(runtime, settings.shutdown_drain_seconds)
        try:
            yield
        finally:
            runtime.draining = True
            for task in runtime.tasks:
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(BaseException):
                    await task
            for pool in upstreams.values():
                with contextlib.suppress(Exception):
                    await pool.session.close()
            await jwks_http.aclose()

    app = GatewayApp(
        title="e-SSC public API",
        version="1.0.0",
        description="The one public door of the e-SSC platform.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.breaker_gauge = breaker_gauge
    app.state.route_table = RouteTable()
    app.state.count_upstream_error = lambda up, kind: upstream_errors.labels(up, kind).inc()
    install_problem_handlers(app)

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Ready to serve: not draining and (unless ``?scope=self``) every upstream ready."""
        runtime: GatewayRuntime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return problem_response(503, detail="Starting up.", instance="/readyz")
        checks = {"not_draining": not runtime.draining}
        if request.query_params.get("scope") != "self":
            results = await asyncio.gather(
                *(
                    _upstream_ready(pool, settings.readiness_timeout_seconds)
                    for pool in runtime.upstreams.values()
                )
            )
            checks.update(dict(zip(runtime.upstreams, results, strict=True)))
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(k for k, v in checks.items() if not v)
        return problem_response(
            503, detail=f"Not ready: {failing}.", instance="/readyz", extra={"checks": checks}
        )

    app.include_router(_own_router())
    app.include_router(keys_router())
    # /livez from the shared router; its /readyz and /metrics are shadowed by the ones above.
    app.include_router(health_router())
    return app


async def _reload_keys(runtime: GatewayRuntime, interval: float = 5.0) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            ring = await asyncio.to_thread(runtime.keystore.reload_if_changed)
        except Exception as exc:
            logger.warning("key reload failed: %s", type(exc).__name__)
            continue
        if ring is not None:
            runtime.ring = ring


def app_from_env() -> FastAPI:
    """The uvicorn factory (``uvicorn --factory gateway.main:app_from_env``)."""
    return create_app(GatewaySettings())
