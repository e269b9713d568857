"""The gateway's route table: exact inventory, templates, methods."""

from __future__ import annotations

from gateway.openapi import merge
from gateway.routes import ROUTES, RouteTable


def test_match_templates_and_methods() -> None:
    table = RouteTable()
    m = table.match("GET", "/v1/ecards/abc123")
    assert m.route is not None
    assert m.route.template == "/v1/ecards/{ecard_id}"
    assert m.route.upstream == "issuance"
    account = table.match("GET", "/v1/ecards/abc/account").route
    assert account is not None
    assert account.upstream == "settlement"
    assert table.match("GET", "/v1/ecards/a/b/c").route is None
    wrong = table.match("PATCH", "/v1/ecards/abc123")
    assert wrong.route is None
    assert set(wrong.allowed_methods) == {"GET", "DELETE"}
    assert table.match("GET", "/v1/nothing").route is None


def test_every_route_is_reachable_by_its_own_template() -> None:
    table = RouteTable()
    for route in ROUTES:
        path = route.template.replace("{", "x").replace("}", "")
        found = table.match(route.method, path).route
        assert found == route, route.template


def test_admin_routes_need_ops_and_public_routes_are_few() -> None:
    for route in ROUTES:
        if route.template.startswith("/v1/admin/"):
            assert {k.value for k in route.kinds} == {"ops"}
            assert route.scopes == frozenset({"ops"})
    public = {r.template for r in ROUTES if r.public}
    assert all(p.startswith(("/oauth", "/.well-known", "/h5/")) for p in public)


def test_merged_token_endpoint_documents_the_gateways_problems_beside_oauth_errors() -> None:
    """The gateway's own 429 (public-route rate limit) reaches /oauth/token callers as a
    problem even though identity documents its 429 in the RFC 6749 format."""
    oauth_429 = {
        "description": "Too many requests.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    identity = {
        "openapi": "3.1.0",
        "info": {"title": "identity", "version": "1"},
        "paths": {
            "/oauth/token": {"post": {"x-essc-own-errors": True, "responses": {"429": oauth_429}}}
        },
    }
    doc = merge({"identity": identity}, public_issuer="https://essc.example")
    answers = doc["paths"]["/oauth/token"]["post"]["responses"]
    assert set(answers["429"]["content"]) == {"application/json", "application/problem+json"}
    assert set(answers["504"]["content"]) == {"application/problem+json"}
