"""OpenAPI documentation helpers: the problem+json schema and per-status error responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE


class FieldError(BaseModel):
    field: str = Field(examples=["holders[2].id_number"])
    message: str = Field(examples=["must be a valid citizen ID number"])


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this service is answered."""

    type: str = Field(examples=[PROBLEM_BASE + "validation-error"])
    title: str = Field(examples=["Request validation failed"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["Invalid or missing fields: phone."])
    instance: str = Field(examples=["/v1/verifications"])
    request_id: str | None = Field(default=None, examples=["3f9c0e6b2a7d4e18b5c1d0a9e8f7b6c5"])
    errors: list[FieldError] | None = None


_DESCRIPTIONS = {
    400: "Bad request.",
    401: "Missing or invalid credentials.",
    403: "Valid credentials, but the wrong client kind or scope.",
    404: "No such resource (or it belongs to another client).",
    409: "Conflicts with the current state.",
    422: "Invalid input; `errors` names each field.",
    423: "Locked.",
    429: "Too many requests; see `Retry-After`.",
}

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "validation-error",
    423: "locked",
    429: "rate-limited",
}


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented as ``application/problem+json``.

    ``descriptions`` overrides the text of a status: ``problems(404, s404="No such card")``.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = descriptions.get(f"s{status}", _DESCRIPTIONS.get(status, "Error."))
        out[status] = {
            "description": description,
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": {
                        "type": PROBLEM_BASE + _SLUGS.get(status, "error"),
                        "title": description.rstrip("."),
                        "status": status,
                        "detail": description,
                        "instance": "/v1/...",
                        "request_id": "3f9c0e6b2a7d4e18b5c1d0a9e8f7b6c5",
                    },
                }
            },
        }
    return out


def add_problem_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Register the ``Problem`` schema the responses above refer to."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault("Problem", schema)
    return openapi
