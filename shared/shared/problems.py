"""RFC 9457 problem details: the one error shape every e-SSC service answers with.

Domain code raises :class:`ProblemError` subclasses (never ``HTTPException``); the
handlers installed by :func:`install_problem_handlers` render them, FastAPI's
validation errors, unknown routes and unexpected exceptions as
``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``,
``instance`` and ``request_id`` (plus ``errors`` for validation failures).
No handler ever echoes the offending input value or a stack trace: inputs may
hold ID numbers, names or tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from shared.requestctx import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://e-ssc.example/problems/"

logger = logging.getLogger("shared.problems")

_STATUS_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Request validation failed"),
    423: ("locked", "Locked"),
    429: ("rate-limited", "Too many requests"),
    431: ("headers-too-large", "Request header fields too large"),
    500: ("internal-error", "Internal server error"),
    502: ("bad-gateway", "Bad gateway"),
    503: ("service-unavailable", "Service unavailable"),
    504: ("gateway-timeout", "Gateway timeout"),
}


def problem_type(slug: str) -> str:
    """The absolute ``type`` URI of a problem slug such as ``qr-invalid``."""
    return PROBLEM_BASE + slug


class ProblemError(Exception):
    """A domain error that renders as one problem+json answer.

    Subclasses set ``status``, ``slug`` and ``title``; instances carry the
    human ``detail``, optional extra members, validation ``errors`` and headers.
    """

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if status is not None:
            self.status = status
            default_slug, default_title = _STATUS_DEFAULTS.get(status, (self.slug, self.title))
            if slug is None and type(self) is ProblemError:
                self.slug, self.title = default_slug, default_title
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.detail = detail or self.title
        self.errors = [dict(e) for e in errors] if errors else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequestError(ProblemError):
    status, slug, title = 400, "bad-request", "Bad request"


class UnauthorizedError(ProblemError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
        super().__init__(detail, headers=headers, **kwargs)


class ForbiddenError(ProblemError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFoundError(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class ConflictError(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLargeError(ProblemError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnprocessableError(ProblemError):
    status, slug, title = 422, "validation-error", "Request validation failed"


class LockedError(ProblemError):
    status, slug, title = 423, "locked", "Locked"


class RateLimitedError(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(
            detail or "Rate limit exceeded; retry later.",
            headers={"Retry-After": str(max(1, retry_after))},
        )


class BadGatewayError(ProblemError):
    status, slug, title = 502, "bad-gateway", "Bad gateway"


class ServiceUnavailableError(ProblemError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


class GatewayTimeoutError(ProblemError):
    status, slug, title = 504, "gateway-timeout", "Gateway timeout"


def format_loc(loc: Sequence[int | str]) -> str:
    """Turn a pydantic error location into a field path like ``items[2].unit_price``.

    The leading ``body``/``query``/``path``/``header`` part is dropped; a body
    that failed as a whole is reported as ``body``.
    """
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source = parts.pop(0)
        if not parts:
            return str(source)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "function_")) or part in ("typed-dict",):
            continue
        else:
            out += ("." if out else "") + part
    return out or "body"


def problem_body(
    status: int,
    *,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the JSON members of a problem document."""
    default_slug, default_title = _STATUS_DEFAULTS.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": problem_type(slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail or title or default_title,
        "instance": instance or "",
        "request_id": current_request_id(),
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return body


def problem_response(
    status: int,
    *,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    errors: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A complete problem+json response."""
    body = problem_body(
        status, slug=slug, title=title, detail=detail, instance=instance, errors=errors, extra=extra
    )
    return Response(
        content=orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers or {}),
    )


def problem_bytes(
    status: int, *, slug: str | None = None, detail: str | None = None, instance: str | None = None
) -> bytes:
    """The encoded body of a problem, for raw ASGI code paths (the gateway)."""
    return orjson.dumps(problem_body(status, slug=slug, detail=detail, instance=instance))


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Field/message pairs of a validation error, without the input values."""
    out: list[dict[str, str]] = []
    for err in exc.errors():
        loc = err.get("loc", ())
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            # pydantic locates a JSON syntax error by character offset: ("body", 13).
            loc, message = ("body",), "Body is not valid JSON."
        elif err.get("type") == "extra_forbidden":
            message = "Unknown field."
        elif err.get("type") in ("too_short", "too_long") and isinstance(err.get("input"), str):
            # A length bound on a validated string (CleanStr) is checked as a generic length:
            # pydantic would say "items"; a caller reads characters.
            ctx = err.get("ctx") or {}
            if err["type"] == "too_short":
                message = f"String should have at least {ctx.get('min_length')} characters"
            else:
                message = f"String should have at most {ctx.get('max_length')} characters"
        out.append({"field": format_loc(loc), "message": message})
    return out


def _instance(request: Request) -> str:
    return request.url.path


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        instance=_instance(request),
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(
        422,
        detail=f"Invalid or missing fields: {fields}." if fields else "Invalid request.",
        instance=_instance(request),
        errors=errors,
    )


# FastAPI's answer to a body it cannot decode at all (e.g. bytes that are not UTF-8); a body
# that is not JSON is already a 422 ``json_invalid``, and so is this one here.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else None
    if status == 400 and detail == _UNPARSABLE_BODY:
        return problem_response(
            422,
            detail="Invalid or missing fields: body.",
            instance=_instance(request),
            errors=[{"field": "body", "message": "Body is not valid JSON (UTF-8)."}],
        )
    if status == 404 and detail in (None, "Not Found"):
        detail = "No such resource."
    if status == 405 and detail in (None, "Method Not Allowed"):
        detail = f"Method {request.method} is not allowed here."
    return problem_response(
        status, detail=detail, instance=_instance(request), headers=exc.headers or None
    )


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error", exc_info=exc)
    return problem_response(
        500, detail="An unexpected error occurred.", instance=_instance(request)
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Render every 4xx and 5xx of ``app`` as problem+json."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)
