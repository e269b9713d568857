"""The outermost ASGI layer of every service: request id, body cap, access log and HTTP metrics.

Written as plain ASGI (not ``BaseHTTPMiddleware``) because it runs on every
request of the gateway's forwarding path, where each microsecond shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from shared.metrics import Metrics
from shared.problems import problem_bytes
from shared.requestctx import accept_request_id, reset_request_id, set_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_logger = logging.getLogger("essc.access")

_REQUEST_ID_HEADER = b"x-request-id"


class BodyTooLargeError(Exception):
    """The request body grew past the configured cap while being read."""


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes) in an ASGI scope."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def send_problem(
    send: Send,
    status: int,
    *,
    detail: str,
    instance: str,
    request_id: str,
    slug: str | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete problem+json response from raw ASGI code."""
    body = problem_bytes(status, slug=slug, detail=detail, instance=instance)
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (_REQUEST_ID_HEADER, request_id.encode()),
    ]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Request id in and out, a cap on body size (413), one access line and metrics per request.

    The request id is the caller's ``X-Request-ID`` when valid, else a new one;
    it is bound for logs, echoed on the response, and (via the context) passed
    on by outgoing calls.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        log_requests: bool = True,
        max_header_bytes: int = 16_384,
        max_headers: int = 100,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.log_requests = log_requests
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers

    def headers_too_large(self, scope: Scope) -> bool:
        """More header bytes or headers than allowed (the HTTP parser itself sets no limit)."""
        headers = scope.get("headers", ())
        if len(headers) > self.max_headers:
            return True
        return sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_id = header_value(scope, _REQUEST_ID_HEADER)
        request_id = accept_request_id(raw_id.decode("latin-1") if raw_id else None)
        scope.setdefault("state", {})["request_id"] = request_id
        token = set_request_id(request_id)
        status_holder = [500]
        response_started = [False]
        rid_bytes = request_id.encode()
        path = scope.get("path", "")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_holder[0] = message["status"]
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != _REQUEST_ID_HEADER
                ]
                headers.append((_REQUEST_ID_HEADER, rid_bytes))
                message["headers"] = headers
            await send(message)

        received = [0]

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body_bytes:
                    raise BodyTooLargeError
            return message

        self.metrics.http_in_flight.labels(self.metrics.service).inc()
        try:
            if self.headers_too_large(scope):
                status_holder[0] = 431
                await send_problem(
                    send,
                    431,
                    instance=path,
                    request_id=request_id,
                    detail=f"Request headers exceed {self.max_header_bytes} bytes or "
                    f"{self.max_headers} fields.",
                )
                return
            length = header_value(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                status = 413 if length.isdigit() else 400
                status_holder[0] = status
                await send_problem(
                    send,
                    status,
                    instance=path,
                    request_id=request_id,
                    detail=(
                        f"Request body exceeds {self.max_body_bytes} bytes."
                        if status == 413
                        else "Invalid Content-Length header."
                    ),
                )
                return
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except BodyTooLargeError:
                status_holder[0] = 413
                if not response_started[0]:
                    await send_problem(
                        send,
                        413,
                        instance=path,
                        request_id=request_id,
                        detail=f"Request body exceeds {self.max_body_bytes} bytes.",
                    )
        finally:
            self.metrics.http_in_flight.labels(self.metrics.service).dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("essc.route") or "unmatched"
            self.metrics.observe_request(template, scope["method"], status_holder[0], elapsed)
            if self.log_requests:
                access_logger.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status_holder[0],
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            reset_request_id(token)
