"""The public OpenAPI document: the upstreams' operations, exactly the route table's inventory.

Each upstream serves its own ``/openapi.json``. The gateway keeps, for every
route in :mod:`gateway.routes`, the upstream's operation for that method and
path; nothing else (internal routes, health) reaches the public document.
Component schemas are merged, renamed with the service's prefix where two
services use one name for different shapes. The gateway adds what it enforces
itself: the OAuth 2.0 client-credentials security scheme with each operation's
scopes, and its own answers (401, 403, 429, 502, 503, 504) as problem+json.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from gateway.routes import ROUTES, Route
from shared.openapi import PROBLEM_REF, finalize_openapi, problem_content, problem_schemas
from shared.problems import PROBLEM_CONTENT_TYPE

SCOPES = {
    "ecard:issue": "Partner apps: verify holders and issue e-cards.",
    "ecard:manage": "Partner apps: read and manage their e-cards.",
    "ecard:qr": "Partner apps: issue QR codes and e-card web page links.",
    "holder:enquiry": "Partner apps: the holder's account and settlement history.",
    "scan": "Hospitals and scanners: exchange a QR code for identity.",
    "settlement:write": "Hospitals: pre-settle, settle and refund.",
    "settlement:read": "Hospitals: read settlements and policies.",
    "reconciliation": "Hospitals: daily totals and reconciliation checks.",
    "ops": "Platform operators.",
}

_GATEWAY_ANSWERS = {
    "401": "Missing, invalid or expired access token.",
    "403": "The client's kind or scopes do not allow this operation.",
    "413": "Request body too large.",
    "429": "Rate limit exceeded; see Retry-After.",
    "431": "Request headers too large or too many.",
    "502": "The upstream service is unreachable.",
    "503": "The upstream service is unavailable (circuit open); see Retry-After.",
    "504": "The upstream service did not answer in time.",
}
_PUBLIC_ANSWERS = {k: v for k, v in _GATEWAY_ANSWERS.items() if k not in ("401", "403")}


def _problem_response(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": problem_content(status, description)}


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if (
                key == "$ref"
                and isinstance(value, str)
                and value.startswith("#/components/schemas/")
            ):
                name = value.rsplit("/", 1)[1]
                out[key] = "#/components/schemas/" + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1–255 printable characters. The same key and body within 24 hours get the "
    "original answer again (`Idempotency-Replayed: true`); another body → 422, while the "
    "original still runs → 409. Required on settlements and refunds.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def _ensure_idempotency_header(operation: dict[str, Any]) -> None:
    params = operation.setdefault("parameters", [])
    if not any(
        p.get("in") == "header" and str(p.get("name", "")).lower() == "idempotency-key"
        for p in params
        if isinstance(p, dict)
    ):
        params.append(dict(IDEMPOTENCY_HEADER))


def _placeholder(route: Route) -> dict[str, Any]:
    return {
        "summary": f"{route.method} {route.template}",
        "description": f"Served by the {route.upstream} service (its description is "
        "unavailable right now).",
        "responses": {
            "default": {
                "description": "Error",
                "content": {"application/problem+json": {"schema": {"$ref": PROBLEM_REF}}},
            }
        },
    }


def merge(docs: Mapping[str, Mapping[str, Any] | None], *, public_issuer: str) -> dict[str, Any]:
    """The public document from each upstream's OpenAPI (``None`` for one that is down).

    Each document is finalized first (``shared.openapi``: problem answers documented),
    so the problem schemas of every part are the same and merge into one.
    """
    docs = {name: finalize_openapi(dict(doc)) if doc else None for name, doc in docs.items()}
    schemas: dict[str, Any] = problem_schemas()
    renames: dict[str, dict[str, str]] = {}
    for service, doc in docs.items():
        mapping: dict[str, str] = {}
        for name, schema in ((doc or {}).get("components", {}).get("schemas", {}) or {}).items():
            if name in schemas and schemas[name] != schema:
                mapping[name] = f"{service.capitalize()}{name}"
        renames[service] = mapping
    for service, doc in docs.items():
        mapping = renames[service]
        for name, schema in ((doc or {}).get("components", {}).get("schemas", {}) or {}).items():
            schemas[mapping.get(name, name)] = _rewrite_refs(copy.deepcopy(schema), mapping)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for route in ROUTES:
        doc = docs.get(route.upstream) or {}
        item = (doc.get("paths") or {}).get(route.template, {})
        operation = item.get(route.method.lower())
        if operation is None:
            operation = _placeholder(route)
        operation = _rewrite_refs(copy.deepcopy(operation), renames.get(route.upstream, {}))
        responses = operation.setdefault("responses", {})
        answers = _PUBLIC_ANSWERS if route.public else _GATEWAY_ANSWERS
        for status, description in answers.items():
            existing = responses.setdefault(status, _problem_response(int(status), description))
            # The upstream may document its own format for a status the gateway also answers
            # (the token endpoint's RFC 6749 429): both bodies can reach the caller.
            content = existing.setdefault("content", {})
            if PROBLEM_CONTENT_TYPE not in content:
                content.update(problem_content(int(status), description))
        if route.method == "POST" and not route.public:
            _ensure_idempotency_header(operation)
        if route.public:
            operation["security"] = []
        else:
            operation["security"] = [{"oauth2": sorted(route.scopes)}]
            kinds = ", ".join(sorted(k.value for k in route.kinds))
            note = f"\n\nClients: {kinds}. Scopes: {', '.join(sorted(route.scopes))}."
            operation["description"] = (operation.get("description") or "") + note
        for tag in operation.get("tags", []):
            tags[tag] = None
        paths.setdefault(route.template, {})[route.method.lower()] = operation
        for param in item.get("parameters", []):
            paths[route.template].setdefault("parameters", []).append(param)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "e-SSC public API",
            "version": "1.0.0",
            "description": (
                "The electronic social security card platform: real-name verification and "
                "e-card issuing for partner apps, QR scanning for hospitals and scanners, "
                "medical-insurance pre-settlement, settlement, refunds and reconciliation. "
                "Authenticate with OAuth 2.0 client credentials at `/oauth/token` "
                "(private_key_jwt, or HTTP Basic for sandbox clients). Errors are "
                "`application/problem+json` (RFC 9457)."
            ),
        },
        "servers": [{"url": public_issuer}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "oauth2": {
                    "type": "oauth2",
                    "description": "Client credentials; access tokens are ES256 at+jwt, "
                    "valid up to 10 minutes.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": f"{public_issuer}/oauth/token",
                            "scopes": SCOPES,
                        }
                    },
                }
            },
        },
        "tags": [{"name": t} for t in tags],
    }
    # Once more over the whole: the Idempotency-Key headers added above get their 400.
    return finalize_openapi(document)
