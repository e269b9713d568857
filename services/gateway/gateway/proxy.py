"""The forwarding path: match the route, authorise, forward over a pooled aiohttp session.

Plain ASGI, no FastAPI routing on this path: the gateway's job is to add as
little as possible to each request. Requests that match no public route fall
through to the gateway's own FastAPI app (health, metrics, docs, JWKS).

Only an allow-list of headers crosses in each direction. Upstream deadline
exceeded → 504 problem; connection failure → 502 problem; every replica's
breaker open → 503 at once. A request is re-sent to another replica only when
the connection to the first could not be made (nothing reached it); otherwise
nothing is retried here — the caller's Idempotency-Key makes its own retry safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import aiohttp

from gateway.routes import Route, RouteTable
from gateway.upstreams import UpstreamPool
from shared.asgi import ASGIApp, Receive, Scope, Send, send_problem
from shared.problems import ProblemError, UnauthorizedError
from shared.requestctx import current_request_id

logger = logging.getLogger("gateway.proxy")

# Request headers a client may send upstream (Authorization only where the route says so).
_REQUEST_HEADERS = frozenset(
    {
        b"content-type",
        b"accept",
        b"accept-language",
        b"idempotency-key",
        b"user-agent",
        b"if-none-match",
    }
)
# Response headers an upstream may send back.
_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "retry-after",
        "location",
        "cache-control",
        "www-authenticate",
        "content-disposition",
        "etag",
        "link",
        "idempotency-replayed",
        "pragma",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "allow",
    }
)
_STREAM_THRESHOLD = 1_048_576


class Authenticator(Protocol):
    """Decides whether a request may use a route, and with which upstream credential."""

    async def authorize(self, route: Route, scope: Scope) -> str | None:
        """The ``Authorization`` value to send upstream (or None); raises ProblemError to refuse."""


class DenyProtectedAuthenticator:
    """Admits public routes only (used when no client authentication is configured)."""

    async def authorize(self, route: Route, scope: Scope) -> str | None:
        if route.public:
            return None
        raise UnauthorizedError(
            "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"}
        )


class Forwarder:
    """The ASGI dispatcher in front of the gateway's own app."""

    def __init__(
        self,
        fallback: ASGIApp,
        *,
        table: RouteTable,
        upstreams: Callable[[], dict[str, UpstreamPool]],
        authenticator: Callable[[], Authenticator],
        timeout: aiohttp.ClientTimeout,
        on_upstream_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.fallback = fallback
        self.table = table
        self.upstreams = upstreams
        self.authenticator = authenticator
        self.timeout = timeout
        self.on_upstream_error = on_upstream_error or (lambda _u, _k: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        match = self.table.match(scope["method"], scope["path"])
        route = match.route
        if route is None:
            if match.allowed_methods:
                await send_problem(
                    send,
                    405,
                    instance=scope["path"],
                    request_id=current_request_id() or "",
                    detail=f"Method {scope['method']} is not allowed here.",
                    extra_headers=[(b"allow", ", ".join(match.allowed_methods).encode())],
                )
                return
            await self.fallback(scope, receive, send)
            return
        scope["essc.route"] = route.template
        try:
            upstream_auth = await self.authenticator().authorize(route, scope)
            if route.upstream == "gateway":
                # Authorised here; the gateway's own app answers (e.g. key rotation).
                await self.fallback(scope, receive, send)
                return
            await self._forward(route, upstream_auth, scope, receive, send)
        except ProblemError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await send_problem(
                send,
                exc.status,
                slug=exc.slug,
                detail=exc.detail,
                instance=scope["path"],
                request_id=current_request_id() or "",
                extra_headers=headers,
            )

    def _headers(self, route: Route, upstream_auth: str | None, scope: Scope) -> dict[str, str]:
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key in _REQUEST_HEADERS:
                headers[key.decode("latin-1")] = value.decode("latin-1")
            elif key == b"authorization" and route.forward_authorization:
                headers["authorization"] = value.decode("latin-1")
        if upstream_auth is not None:
            headers["authorization"] = upstream_auth
        request_id = current_request_id()
        if request_id:
            headers["x-request-id"] = request_id
        client = scope.get("client")
        if client:
            headers["x-forwarded-for"] = client[0]
        return headers

    async def _forward(
        self, route: Route, upstream_auth: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        pool = self.upstreams()[route.upstream]
        body = await _read_body(receive)
        headers = self._headers(route, upstream_auth, scope)
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        tried: set[int] = set()
        while True:
            index = pool.pick(tried)
            if index is None:
                self.on_upstream_error(route.upstream, "breaker_open")
                raise ProblemError(
                    f"The {route.upstream} service is unavailable; retry shortly.",
                    status=503,
                    headers={"Retry-After": "5"},
                )
            tried.add(index)
            replica = pool.replicas[index]
            try:
                await self._exchange(
                    pool, replica.base_url + target, scope["method"], body, headers, send
                )
            except aiohttp.ClientConnectorError:
                # Nothing reached this replica: another one may take the request safely.
                replica.breaker.failure()
                self.on_upstream_error(route.upstream, "connect")
                if len(tried) < len(pool.replicas):
                    continue
                raise _problem(502, f"The {route.upstream} service is unreachable.") from None
            except TimeoutError:
                replica.breaker.failure()
                self.on_upstream_error(route.upstream, "timeout")
                raise _problem(
                    504, f"The {route.upstream} service did not answer in time."
                ) from None
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError):
                replica.breaker.failure()
                self.on_upstream_error(route.upstream, "connection")
                raise _problem(502, f"The {route.upstream} service is unreachable.") from None
            except BaseException:
                replica.breaker.abandon()  # e.g. cancelled: the client went away mid-request
                raise
            replica.breaker.success()
            return

    async def _exchange(
        self,
        pool: UpstreamPool,
        url: str,
        method: str,
        body: bytes,
        headers: dict[str, str],
        send: Send,
    ) -> None:
        async with pool.session.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
        ) as resp:
            out = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in resp.headers.items()
                if k.lower() in _RESPONSE_HEADERS
            ]
            length = resp.content_length
            if length is not None and length <= _STREAM_THRESHOLD:
                payload = await resp.read()
                out.append((b"content-length", str(len(payload)).encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                await send({"type": "http.response.body", "body": payload})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_chunked(65_536):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def _problem(status: int, detail: str) -> ProblemError:
    return ProblemError(detail, status=status)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
