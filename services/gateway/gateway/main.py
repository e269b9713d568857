"""The gateway's app factory: the forwarding path in front of a small FastAPI app of its own.

The gateway holds no business rules and no database. Its own routes are
health (``/livez``, ``/readyz`` aggregating the upstreams), ``/metrics``, the
merged public JWKS and its internal JWKS (the keys it signs upstream
credentials with); everything in :mod:`gateway.routes` is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from gateway.config import GatewaySettings
from gateway.proxy import Authenticator, DenyProtectedAuthenticator, Forwarder, Upstream
from gateway.routes import RouteTable
from shared.app import health_router, install_drain_on_sigterm
from shared.asgi import RequestContextMiddleware
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.problems import install_problem_handlers, problem_response
from shared.tokens.jwks import JwksCache
from shared.tokens.keys import KeyRing, KeyStore

logger = logging.getLogger("gateway")

UPSTREAMS = ("identity", "issuance", "settlement")
KEY_PURPOSES = ("internal",)


@dataclass
class GatewayRuntime:
    """The live parts of the gateway process."""

    settings: GatewaySettings
    ring: KeyRing
    keystore: KeyStore
    upstreams: dict[str, Upstream]
    jwks_http: httpx.AsyncClient
    public_jwks: dict[str, JwksCache]
    authenticator: Authenticator
    draining: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    readiness: dict[str, Any] = field(default_factory=dict)


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
        return RequestContextMiddleware(
            forwarder,
            metrics=self.state.metrics,
            max_body_bytes=settings.max_body_bytes,
            log_requests=settings.log_requests,
        )


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

    return router


async def _upstream_ready(up: Upstream, timeout: float) -> bool:
    try:
        async with up.session.get(
            up.base_url + "/readyz", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            return resp.status == 200
    except Exception:
        return False


def create_app(settings: GatewaySettings, *, authenticator: Authenticator | None = None) -> FastAPI:
    """Build the gateway; connections and keys are opened by its lifespan."""
    configure_logging("gateway", settings.log_level)
    metrics = Metrics("gateway")
    upstream_errors = metrics.counter(
        "essc_gateway_upstream_errors_total",
        "Upstream failures by upstream and kind.",
        ["upstream", "kind"],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keystore = KeyStore(settings.keys_dir)
        if settings.is_production:
            ring = await asyncio.to_thread(keystore.load)
        else:
            ring = await asyncio.to_thread(keystore.ensure, KEY_PURPOSES)
        upstreams: dict[str, Upstream] = {}
        for name in UPSTREAMS:
            connector = aiohttp.TCPConnector(
                limit=settings.upstream_pool_size, keepalive_timeout=30, ttl_dns_cache=60
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            upstreams[name] = Upstream(name, str(getattr(settings, f"{name}_url")), session)
        jwks_http = httpx.AsyncClient(timeout=2.0, follow_redirects=False)
        public_jwks = {
            name: JwksCache(
                str(getattr(settings, f"{name}_url")) + "/.well-known/jwks.json",
                client=jwks_http,
                ttl=settings.jwks_cache_seconds,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
            )
            for name in ("identity", "issuance")
        }
        runtime = GatewayRuntime(
            settings=settings,
            ring=ring,
            keystore=keystore,
            upstreams=upstreams,
            jwks_http=jwks_http,
            public_jwks=public_jwks,
            authenticator=authenticator or DenyProtectedAuthenticator(),
        )
        app.state.runtime = runtime
        install_drain_on_sigterm(runtime, settings.shutdown_drain_seconds)
        try:
            yield
        finally:
            runtime.draining = True
            for task in runtime.tasks:
                task.cancel()
            for up in upstreams.values():
                with contextlib.suppress(Exception):
                    await up.session.close()
            await jwks_http.aclose()

    app = GatewayApp(
        title="e-SSC public API",
        version="1.0.0",
        description="The one public door of the e-SSC platform.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.route_table = RouteTable()
    app.state.count_upstream_error = lambda up, kind: upstream_errors.labels(up, kind).inc()
    install_problem_handlers(app)

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        runtime: GatewayRuntime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return problem_response(503, detail="Starting up.", instance="/readyz")
        results = await asyncio.gather(
            *(
                _upstream_ready(up, settings.readiness_timeout_seconds)
                for up in runtime.upstreams.values()
            )
        )
        checks = {"not_draining": not runtime.draining}
        checks.update({name: ok for name, ok in zip(runtime.upstreams, results, strict=True)})
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(k for k, v in checks.items() if not v)
        return problem_response(
            503, detail=f"Not ready: {failing}.", instance="/readyz", extra={"checks": checks}
        )

    # /livez and /metrics from the shared router; its /readyz is shadowed by the one above.
    app.include_router(health_router())
    app.include_router(_own_router())
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory (``uvicorn --factory gateway.main:app_from_env``)."""
    return create_app(GatewaySettings())
