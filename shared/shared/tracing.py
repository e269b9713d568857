"""OpenTelemetry tracing: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, absent otherwise.

Off is the default and costs nothing: no OpenTelemetry module is imported, no
middleware is added, no hook is installed. On, a process exports over OTLP/HTTP
(the exporter reads the standard ``OTEL_EXPORTER_*`` variables itself) and traces

- every request a service serves (a server span named by route template; the
  health and metrics routes are left out),
- every call it makes with aiohttp (a client span, and the W3C ``traceparent``
  header on the outgoing request, so the next service continues the trace),
- every statement it sends to its database (a span per statement).

Backend services get all three from :mod:`shared.app`. The gateway, whose
forwarding path runs in front of FastAPI, wraps its outermost ASGI app with
:func:`instrument_asgi` (which also turns on aiohttp client tracing; call
:func:`instrument_aiohttp` at app build time too if sessions may be opened
before the first request builds the middleware stack).

Tests and embedders may install their own provider with :func:`use_tracer_provider`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("shared.tracing")

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "/livez,/readyz,/metrics"

_lock = threading.Lock()
_state: dict[str, Any] = {"provider": None, "configured": False, "aiohttp": False}


def tracing_configured() -> bool:
    """True when the environment asks for traces (``OTEL_EXPORTER_OTLP_ENDPOINT`` is set)."""
    return bool(os.environ.get(ENDPOINT_ENV, "").strip())


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Make ``provider`` the process's tracer provider (None turns tracing off again).

    For tests (an in-memory exporter) and for embedders that build their own
    provider. Apps built afterwards use it; apps already built keep theirs.
    """
    with _lock:
        _state["provider"] = provider
        _state["configured"] = True
        if provider is None and _state["aiohttp"]:
            from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

            AioHttpClientInstrumentor().uninstrument()
            _state["aiohttp"] = False


def tracer_provider(service: str) -> TracerProvider | None:
    """The process's provider, built on first use when tracing is configured; else None.

    The provider exports in batches over OTLP/HTTP; its resource names the
    service (``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override).
    """
    with _lock:
        if _state["configured"]:
            provider: TracerProvider | None = _state["provider"]
            return provider
        _state["configured"] = True
        if not tracing_configured():
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({SERVICE_NAME: f"essc-{service}"})
        if os.environ.get("OTEL_SERVICE_NAME"):
            resource = Resource.create({})  # the SDK reads OTEL_SERVICE_NAME itself
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _state["provider"] = provider
        logger.info("tracing on: exporting over OTLP to %s", os.environ.get(ENDPOINT_ENV))
        return provider


def shutdown_tracing() -> None:
    """Flush and stop the process's provider, if any (end of the process)."""
    with _lock:
        provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


def instrument_aiohttp(service: str) -> bool:
    """Trace every aiohttp client session created from now on; True if tracing is on.

    Client spans carry the caller's context to the next service in the
    ``traceparent`` header. Idempotent.
    """
    provider = tracer_provider(service)
    if provider is None:
        return False
    with _lock:
        if not _state["aiohttp"]:
            from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

            AioHttpClientInstrumentor().instrument(tracer_provider=provider)
            _state["aiohttp"] = True
    return True


class _NameByRouteTemplate:
    """Inside the server-span layer: once routed, name the span by the route template.

    Starlette records the matched route in the scope (the gateway's forwarder
    records ``essc.route``), as the metrics layer reads it too. The raw path is
    never used: it carries ids.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import trace

        span = trace.get_current_span()

        async def naming_send(message: Message) -> None:
            # The server layer ends its span with the last body chunk, so name it at the start.
            if message["type"] == "http.response.start":
                template = getattr(scope.get("route"), "path", None) or scope.get("essc.route")
                if template:
                    span.update_name(f"{scope.get('method') or 'HTTP'} {template}")
                    span.set_attribute("http.route", str(template))
            await send(message)

        await self.app(scope, receive, naming_send)


def instrument_asgi(app: ASGIApp, service: str) -> ASGIApp:
    """``app`` wrapped in an OpenTelemetry server-span layer, or ``app`` itself when off.

    Wrap the outermost layer, so that the span covers the whole request and any
    aiohttp call made while serving it is its child. Backend services get this
    from :class:`shared.app.ServiceApp`; the gateway, whose forwarder runs in
    front of FastAPI, calls it in its ``build_middleware_stack``::

        return instrument_asgi(RequestContextMiddleware(forwarder, ...), "gateway")

    Spans are named ``<METHOD> <route template>`` once the request is routed
    (the method alone if it never is). Also turns on aiohttp client tracing, so
    outgoing calls carry the trace on.
    """
    provider = tracer_provider(service)
    if provider is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    instrument_aiohttp(service)

    def method_only(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
        return str(scope.get("method") or "HTTP"), {}

    wrapped: ASGIApp = OpenTelemetryMiddleware(
        _NameByRouteTemplate(app),
        excluded_urls=EXCLUDED_URLS,
        default_span_details=method_only,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
    )
    return wrapped


def instrument_engine(engine: AsyncEngine, service: str) -> bool:
    """Add a span per database statement sent through ``engine``; True if tracing is on."""
    provider = tracer_provider(service)
    if provider is None:
        return False
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqla_version
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import get_tracer

    tracer = get_tracer("opentelemetry.instrumentation.sqlalchemy", sqla_version, provider)
    # The connection-usage metric is Prometheus's job here (pool metrics are not exported).
    usage = (
        NoOpMeterProvider()
        .get_meter("shared.tracing")
        .create_up_down_counter("db.client.connections.usage")
    )
    # EngineTracer is what SQLAlchemyInstrumentor attaches per engine; used directly because
    # the instrumentor instruments once per process and our engines come and go with apps.
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]
    return True


_NO_SPAN = contextlib.nullcontext()


def statement_span(sql: str, system: str = "postgresql") -> AbstractContextManager[Any]:
    """A client span for one statement sent to the database driver directly (not through
    SQLAlchemy, whose statements :func:`instrument_engine` traces); a no-op when off.

    Named by the SQL verb, as the SQLAlchemy spans are; ``db.statement`` is the statement
    with its placeholders (never the values: they may be personal data).
    """
    provider = _state["provider"]
    if provider is None:
        return _NO_SPAN
    from opentelemetry.trace import SpanKind

    words = sql.split(None, 1)
    span: AbstractContextManager[Any] = provider.get_tracer(
        "shared.tracing.db"
    ).start_as_current_span(
        words[0].upper() if words else "SQL",
        kind=SpanKind.CLIENT,
        attributes={"db.system": system, "db.statement": sql},
    )
    return span
