"""The error answers of every operation, documented the way they are really sent.

Every service renders its 4xx and 5xx as ``application/problem+json``
(:mod:`shared.problems`), but FastAPI documents a validation error as
``application/json`` with its own ``HTTPValidationError`` shape and nothing else.
:func:`finalize_openapi` rewrites a service's document once, when it is built:

- every 4xx/5xx response without a content of its own (and FastAPI's default
  422) becomes ``application/problem+json`` with the :class:`Problem` schema;
- the answers any operation can give are added where missing: 401 and 403
  (unless the operation is public), 404, 409 (on unsafe methods: state
  conflicts, an ``Idempotency-Key`` still in flight), 422, 429 and 503 (the
  database or a dependency is unavailable);
  400 where an ``Idempotency-Key`` header is read, 413 where a body is;
- the ``Idempotency-Key`` header is described with its real bounds, and marked
  required where the route says so (``openapi_extra=IDEMPOTENCY_REQUIRED``).

Routes opt out with ``openapi_extra``: :data:`PUBLIC` (no 401/403) and
:data:`OWN_ERRORS` (the OAuth token endpoint, whose errors follow RFC 6749).
The gateway's merged document applies the same function, so the public contract
documents every status a caller can see.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from shared.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE

PUBLIC: dict[str, Any] = {"x-essc-public": True}
"""``openapi_extra`` of an operation that needs no bearer token (no 401/403 answers)."""

OWN_ERRORS: dict[str, Any] = {"x-essc-own-errors": True}
"""``openapi_extra`` of an operation that documents every error answer itself."""

IDEMPOTENCY_REQUIRED: dict[str, Any] = {"x-essc-idempotency-required": True}
"""``openapi_extra`` of an operation whose ``Idempotency-Key`` header is required (400 without)."""

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[\x21-\x7e]{1,255}$",
    "description": "1–255 printable ASCII characters, unique per client and operation.",
}

_UNSAFE = frozenset({"post", "put", "patch", "delete"})
_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


class FieldError(BaseModel):
    """One invalid field of a validation problem."""

    field: str = Field(examples=["items[2].unit_price"])
    message: str = Field(examples=["must be a decimal string in yuan with at most two decimals"])


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the platform is answered."""

    type: str = Field(examples=[PROBLEM_BASE + "validation-error"])
    title: str = Field(examples=["Request validation failed"])
    status: int = Field(ge=400, le=599, examples=[422])
    detail: str = Field(examples=["Invalid or missing fields: phone."])
    instance: str = Field(examples=["/v1/verifications"])
    request_id: str | None = Field(default=None, examples=["3f9c0e6b2a7d4e18b5c1d0a9e8f7b6c5"])
    errors: list[FieldError] | None = Field(
        default=None, description="Validation problems: each invalid field and why."
    )


DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (a missing or malformed `Idempotency-Key`).",
    401: "Missing or invalid credentials.",
    403: "Valid credentials, but the wrong client kind or scope.",
    404: "No such resource (or it belongs to another client).",
    409: "Conflicts with the current state, or the same `Idempotency-Key` is still in flight.",
    410: "Gone.",
    413: "Request body too large.",
    415: "Unsupported media type.",
    422: "Invalid input; `errors` names each field.",
    423: "Locked.",
    429: "Too many requests; see `Retry-After`.",
    431: "Request headers too large or too many.",
    500: "Internal server error.",
    502: "A service this one depends on failed.",
    503: "Unavailable (database or a dependency); retry later.",
    504: "A service this one depends on did not answer in time.",
}

SLUGS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    410: "gone",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    423: "locked",
    429: "rate-limited",
    431: "headers-too-large",
    502: "bad-gateway",
    503: "service-unavailable",
    504: "gateway-timeout",
}

PROBLEM_REF = "#/components/schemas/Problem"


def problem_content(status: int, description: str) -> dict[str, Any]:
    """The ``content`` of a problem answer, with an example valid against :class:`Problem`."""
    return {
        PROBLEM_CONTENT_TYPE: {
            "schema": {"$ref": PROBLEM_REF},
            "example": {
                "type": PROBLEM_BASE + SLUGS.get(status, "error"),
                "title": description.split(";")[0].rstrip("."),
                "status": status,
                "detail": description,
                "instance": "/v1/...",
                "request_id": "3f9c0e6b2a7d4e18b5c1d0a9e8f7b6c5",
            },
        }
    }


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as ``application/problem+json``.

    ``descriptions`` overrides the text of a status: ``problems(404, s404="No such card")``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = descriptions.get(f"s{status}", DESCRIPTIONS.get(status, "Error."))
        out[status] = {"description": description, "content": problem_content(status, description)}
    return out


def problem_schemas() -> dict[str, Any]:
    """The component schemas :data:`PROBLEM_REF` needs (``Problem`` and ``FieldError``)."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    out: dict[str, Any] = dict(schema.pop("$defs", {}))
    out["Problem"] = schema
    return out


def _is_default_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _finalize_operation(
    method: str, operation: dict[str, Any], *, idempotency_on_post: bool
) -> None:
    # The markers stay in the document (legal ``x-`` extensions): finalizing is idempotent,
    # and the gateway finalizes the services' documents again when it merges them.
    own_errors = bool(operation.get("x-essc-own-errors", False))
    public = bool(operation.get("x-essc-public", False))
    idem_required = bool(operation.get("x-essc-idempotency-required", False))
    if idempotency_on_post and method == "post" and not (public or own_errors):
        params_ = operation.setdefault("parameters", [])
        if not any(str(p.get("name", "")).lower() == "idempotency-key" for p in params_):
            params_.append({"name": IDEMPOTENCY_HEADER, "in": "header", "required": False})
    params: list[dict[str, Any]] = operation.get("parameters", [])
    idempotent = False
    for param in params:
        if param.get("in") == "header" and param.get("name", "").lower() == "idempotency-key":
            idempotent = True
            param["schema"] = dict(IDEMPOTENCY_KEY_SCHEMA)
            param["required"] = idem_required or bool(param.get("required"))
            param.setdefault("description", IDEMPOTENCY_KEY_SCHEMA["description"])
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if own_errors:
        return
    wanted = {404, 422, 429, 503}
    if not public:
        wanted |= {401, 403}
    if method in _UNSAFE:
        wanted.add(409)
    if idempotent:
        wanted.add(400)
    if "requestBody" in operation:
        wanted.add(413)
    for status in sorted(wanted):
        responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    for key, response in responses.items():
        if not key.isdigit() or int(key) < 400:
            continue
        status = int(key)
        if _is_default_validation(response):
            response.pop("content")
        if not response.get("content"):
            description = response.get("description") or DESCRIPTIONS.get(status, "Error.")
            if description == "Validation Error":
                description = DESCRIPTIONS[422]
            response["description"] = description
            response["content"] = problem_content(status, description)


def finalize_openapi(
    document: dict[str, Any], *, idempotency_on_post: bool = False
) -> dict[str, Any]:
    """A copy of ``document`` whose operations document their problem answers (see module).

    ``idempotency_on_post``: every authenticated POST accepts ``Idempotency-Key`` (the
    service runs ``shared.idempotency.IdempotencyMiddleware``).
    """
    doc = copy.deepcopy(document)
    for item in (doc.get("paths") or {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                _finalize_operation(method, operation, idempotency_on_post=idempotency_on_post)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in problem_schemas().items():
        schemas.setdefault(name, schema)
    text = repr(doc.get("paths"))
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f"/{name}'" not in text:
            schemas.pop(name)
    return doc


__all__ = [
    "IDEMPOTENCY_REQUIRED",
    "OWN_ERRORS",
    "PUBLIC",
    "FieldError",
    "Problem",
    "finalize_openapi",
    "problem_content",
    "problem_schemas",
    "problems",
]
