"""What every backend service is made of: the app class, runtime parts, health and metrics.

A service's ``create_app(settings)`` calls :func:`build_service_app` with its
routers and hooks. The lifespan builds the database engine, loads (or, outside
production, creates) the service's signing keys, opens one aiohttp session for
peer calls and the JWKS caches of the issuers it trusts, and closes all of it on
shutdown. ``/livez`` depends on nothing; ``/readyz`` checks the database, the
keys and the draining flag; ``/metrics`` is the Prometheus exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import aiohttp
import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel
from sqlalchemy import Table
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from shared.asgi import RequestContextMiddleware
from shared.auth import (
    GATEWAY_ISSUER,
    InternalTokenVerifier,
    PrincipalDep,
    RingKeySource,
    ServiceTokenMinter,
    service_urn,
)
from shared.db import Database, install_db_error_handler, make_engine
from shared.http import ServiceClient, new_session
from shared.idempotency import IdempotencyMiddleware
from shared.keyrotation import rotation_router
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.openapi import finalize_openapi
from shared.problems import install_problem_handlers, problem_response
from shared.settings import Environment, ServiceSettings
from shared.tokens.codec import AsyncKeySource
from shared.tokens.jwks import JwksCache
from shared.tokens.keys import KeyRing, KeyStore
from shared.tracing import (
    instrument_aiohttp,
    instrument_asgi,
    instrument_engine,
)

logger = logging.getLogger("shared.app")

ReadinessCheck = Callable[[], Awaitable[bool]]
Hook = Callable[["Runtime"], Awaitable[None]]

INTERNAL_PURPOSE = "internal"


@dataclass
class Runtime:
    """The live parts of one service process, built by the lifespan and kept on ``app.state``."""

    service: str
    settings: ServiceSettings
    metrics: Metrics
    db: Database
    keystore: KeyStore
    ring: KeyRing
    http: aiohttp.ClientSession
    jwks_http: httpx.AsyncClient
    jwks: dict[str, JwksCache]
    verifier: InternalTokenVerifier
    minter: ServiceTokenMinter
    clients: dict[str, ServiceClient] = field(default_factory=dict)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    draining: bool = False
    # Encrypts stored Idempotency-Key answers (set by services that hold data keys).
    idempotency_cipher: Any = None

    def client(self, peer: str) -> ServiceClient:
        """The :class:`ServiceClient` for a peer service (``identity``, ``issuance``, ...)."""
        return self.clients[peer]

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Run a background loop for the life of the process; cancelled at shutdown."""
        self.tasks.append(asyncio.ensure_future(coro))
        self.tasks[-1].set_name(name)


class ServiceApp(FastAPI):
    """FastAPI whose outermost layer is :class:`RequestContextMiddleware`.

    Wrapping outside Starlette's ``ServerErrorMiddleware`` means even a 500
    carries the request id and is counted.
    """

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        table = getattr(self.state, "idempotency_table", None)
        if table is not None:
            inner = IdempotencyMiddleware(
                inner,
                table=table,
                runtime=lambda: self.state.runtime,
                routes=getattr(self.state, "service_routes", ()),
            )
        settings: ServiceSettings = self.state.settings
        stack = RequestContextMiddleware(
            inner,
            metrics=self.state.metrics,
            max_body_bytes=settings.max_body_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            log_requests=settings.log_requests,
        )
        # Server spans, outermost; the app itself when tracing is off (see shared.tracing).
        return instrument_asgi(stack, self.state.metrics.service)


def _peer_url(settings: ServiceSettings, peer: str) -> str:
    """All replicas of a peer, comma-separated, as configured."""
    return str(getattr(settings, f"{peer}_url"))


def _all_urls(urls: str) -> list[str]:
    """Every replica of a comma-separated list (each serves the same JWKS)."""
    return [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]


def health_router() -> APIRouter:
    """``/livez``, ``/readyz`` and ``/metrics`` (unauthenticated, excluded from the public API)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return problem_response(503, detail="Starting up.", instance="/readyz")
        checks: dict[str, bool] = {"not_draining": not runtime.draining}
        results = await asyncio.gather(
            *(c() for c in runtime.readiness.values()), return_exceptions=True
        )
        for name, result in zip(runtime.readiness, results, strict=True):
            checks[name] = result is True
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(k for k, v in checks.items() if not v)
        return problem_response(
            503, detail=f"Not ready: {failing}.", instance="/readyz", extra={"checks": checks}
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        m: Metrics = request.app.state.metrics
        return Response(m.render(), media_type=m.content_type)

    return router


def jwks_router(public_purposes: Iterable[str]) -> APIRouter:
    """``/.well-known/jwks.json`` (public purposes) and ``/internal/jwks.json`` (all)."""
    public = tuple(public_purposes)
    router = APIRouter(include_in_schema=False)

    @router.get("/.well-known/jwks.json")
    async def public_jwks(request: Request) -> Response:
        ring: KeyRing = request.app.state.runtime.ring
        return JSONResponse(ring.jwks(public), headers={"Cache-Control": "public, max-age=300"})

    @router.get("/internal/jwks.json")
    async def internal_jwks(request: Request) -> Response:
        ring: KeyRing = request.app.state.runtime.ring
        return JSONResponse(ring.jwks(), headers={"Cache-Control": "max-age=60"})

    return router


def testing_router() -> APIRouter:
    """Routes mounted only when the environment is ``test``; never in OpenAPI.

    ``GET /internal/test/sleep?seconds=`` answers after sleeping: the in-flight
    request of the graceful-shutdown test.
    """
    router = APIRouter(include_in_schema=False)

    @router.get("/internal/test/sleep")
    async def sleep(seconds: Annotated[float, Query(ge=0, le=30)] = 1.0) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return router


class Drainable(Protocol):
    draining: bool


class WhoAmI(BaseModel):
    """The verified caller of a request, as the service sees it."""

    client_id: str
    kind: str
    scopes: list[str]
    region_code: str | None = None
    level: int | None = None


def internal_router() -> APIRouter:
    """``/v1/whoami`` and ``/internal/whoami``: the verified caller (integration debugging)."""
    router = APIRouter()

    async def whoami(principal: PrincipalDep) -> WhoAmI:
        return WhoAmI(
            client_id=principal.client_id,
            kind=principal.kind.value,
            scopes=sorted(principal.scopes),
            region_code=principal.region_code,
            level=principal.level,
        )

    router.add_api_route(
        "/v1/whoami",
        whoami,
        methods=["GET"],
        tags=["auth"],
        summary="Who am I",
        description="The calling client as the platform sees it: id, kind, scopes and, for "
        "hospitals, region and level. Useful to check an integration's credentials.",
        response_model=WhoAmI,
    )
    router.add_api_route(
        "/internal/whoami",
        whoami,
        methods=["GET"],
        include_in_schema=False,
        response_model=WhoAmI,
    )
    return router


def install_drain_on_sigterm(runtime: Drainable, drain_seconds: float = 0.0) -> None:
    """On SIGTERM turn ``/readyz`` to 503 at once, keep serving ``drain_seconds``, then stop.

    Wraps uvicorn's own handler. Stopping is done by setting the server's
    ``should_exit`` rather than by re-delivering the signal, so after finishing
    in-flight requests and the lifespan shutdown the process exits 0 (uvicorn
    re-raises a captured signal, which would end the process with -15).
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread (in-process tests)
        return
    server = getattr(previous, "__self__", None)
    loop = asyncio.get_running_loop()

    def stop_server() -> None:
        if server is not None and hasattr(server, "should_exit"):
            server.should_exit = True

    def handler(signum: int, frame: Any) -> None:
        runtime.draining = True
        logger.info("SIGTERM: draining", extra={"drain_seconds": drain_seconds})
        if server is None or not hasattr(server, "should_exit"):
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(0)
            return
        loop.call_soon_threadsafe(loop.call_later, drain_seconds, stop_server)

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


async def _reload_keys_loop(runtime: Runtime, interval: float = 5.0) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            ring = await asyncio.to_thread(runtime.keystore.reload_if_changed)
        except Exception as exc:  # keep the keys we have; a half-written file is retried
            logger.warning("key reload failed: %s", type(exc).__name__)
            continue
        if ring is not None:
            runtime.ring = ring
            logger.info("signing keys reloaded")


def build_service_app(
    *,
    settings: ServiceSettings,
    service: str,
    title: str,
    description: str,
    key_purposes: Sequence[str],
    public_key_purposes: Sequence[str] = (),
    peers: Sequence[str] = (),
    routers: Sequence[APIRouter] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    openapi_tags: list[dict[str, Any]] | None = None,
    idempotency_table: Table | None = None,
) -> ServiceApp:
    """Assemble a backend service app; nothing is opened until the lifespan starts.

    ``peers`` are the services this one calls and whose internal tokens it
    accepts (plus the gateway's, always). ``key_purposes`` are the signing key
    purposes this service owns (``internal`` is always added). With
    ``idempotency_table`` every POST honours ``Idempotency-Key``
    (:class:`shared.idempotency.IdempotencyMiddleware`); services whose POSTs move
    money claim keys inside their own transactions instead.
    """
    configure_logging(service, settings.log_level)
    metrics = Metrics(service)
    if idempotency_table is not None:
        metrics.idempotent_replays()  # exposed from the start, at 0
    purposes = tuple(dict.fromkeys((*key_purposes, INTERNAL_PURPOSE)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            make_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                statement_timeout_ms=settings.db_statement_timeout_ms,
                pre_ping=settings.db_pre_ping,
            )
        )
        instrument_engine(db.engine, service)  # no-op unless tracing is configured
        keystore = KeyStore(settings.keys_dir)
        if settings.is_production:
            ring = await asyncio.to_thread(keystore.load)
        else:
            ring = await asyncio.to_thread(keystore.ensure, purposes)
        session = new_session()
        jwks_http = httpx.AsyncClient(timeout=2.0, follow_redirects=False)
        jwks: dict[str, JwksCache] = {
            GATEWAY_ISSUER: JwksCache(
                [u + "/internal/jwks.json" for u in _all_urls(settings.gateway_url)],
                client=jwks_http,
                ttl=settings.jwks_cache_seconds,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
            )
        }
        for peer in peers:
            jwks[service_urn(peer)] = JwksCache(
                [u + "/internal/jwks.json" for u in _all_urls(_peer_url(settings, peer))],
                client=jwks_http,
                ttl=settings.jwks_cache_seconds,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
            )
        runtime_box: list[Runtime] = []
        issuers: dict[str, AsyncKeySource] = dict(jwks)
        issuers[service_urn(service)] = RingKeySource(lambda: runtime_box[0].ring)
        verifier = InternalTokenVerifier(audience=service_urn(service), issuers=issuers)
        minter = ServiceTokenMinter(service=service, ring_getter=lambda: runtime_box[0].ring)
        runtime = Runtime(
            service=service,
            settings=settings,
            metrics=metrics,
            db=db,
            keystore=keystore,
            ring=ring,
            http=session,
            jwks_http=jwks_http,
            jwks=jwks,
            verifier=verifier,
            minter=minter,
        )
        runtime_box.append(runtime)
        for peer in peers:
            runtime.clients[peer] = ServiceClient(
                base_url=_peer_url(settings, peer),
                target=peer,
                session=session,
                token_for=minter.token_for,
                timeout=settings.upstream_timeout_seconds,
            )
        runtime.readiness["database"] = db.ping

        async def keys_loaded() -> bool:
            try:
                for purpose in purposes:
                    runtime.ring.signing_key(purpose)
            except Exception:
                return False
            return True

        runtime.readiness["keys"] = keys_loaded
        app.state.runtime = runtime
        app.state.db = db
        app.state.internal_verifier = verifier
        runtime.spawn(_reload_keys_loop(runtime), "key-reload")
        purge_every = getattr(settings, "idempotency_purge_seconds", 0)
        if idempotency_table is not None and purge_every:
            from shared.idempotency import purge_loop

            runtime.spawn(purge_loop(db.engine, idempotency_table, purge_every), "idem-purge")
        install_drain_on_sigterm(runtime, settings.shutdown_drain_seconds)
        try:
            for hook in on_startup:
                await hook(runtime)
            yield
        finally:
            runtime.draining = True
            for hook in reversed(on_shutdown):
                with contextlib.suppress(Exception):
                    await hook(runtime)
            for task in runtime.tasks:
                task.cancel()
            for task in runtime.tasks:
                with contextlib.suppress(BaseException):
                    await task
            await session.close()
            await jwks_http.aclose()
            await db.dispose()

    app = ServiceApp(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.idempotency_table = idempotency_table
    # Each service router's own routes (full paths): the idempotency layer labels replays.
    app.state.service_routes = [r for router in routers for r in router.routes]
    install_problem_handlers(app)
    install_db_error_handler(app)
    app.include_router(health_router())
    app.include_router(jwks_router(public_key_purposes))
    app.include_router(internal_router())
    app.include_router(rotation_router())
    if settings.environment is Environment.TEST:
        app.include_router(testing_router())
    for router in routers:
        app.include_router(router)
    install_openapi(app)
    # Before the lifespan opens the peer session: its calls then carry the trace context.
    instrument_aiohttp(service)  # no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    return app


def install_openapi(app: FastAPI) -> None:
    """Serve FastAPI's document with every problem answer documented (``shared.openapi``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finalize_openapi(
                generate(),
                idempotency_on_post=getattr(app.state, "idempotency_table", None) is not None,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
