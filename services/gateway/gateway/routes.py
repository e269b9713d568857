"""The public route table: every operation the gateway forwards, to whom, and who may call it.

This table is the gateway's whole inventory (OWASP API9): a path and method not
listed here is answered 404/405 by the gateway itself and never reaches a
service. ``kinds`` and ``scopes`` come from the contract's table of client kinds
and scopes (API.md, "Clients and scopes"); an empty ``kinds`` marks a public
operation (the OAuth endpoints, the e-card web page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared.tokens.claims import ClientKind

PARTNER = frozenset({ClientKind.PARTNER_APP})
HOSPITAL = frozenset({ClientKind.HOSPITAL})
SCANNING = frozenset({ClientKind.HOSPITAL, ClientKind.SCANNER})
OPS = frozenset({ClientKind.OPS})
PUBLIC: frozenset[ClientKind] = frozenset()
ANY_CLIENT = frozenset(
    {ClientKind.PARTNER_APP, ClientKind.HOSPITAL, ClientKind.SCANNER, ClientKind.OPS}
)

_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    """One public operation."""

    method: str
    template: str
    upstream: str
    kinds: frozenset[ClientKind]
    scopes: frozenset[str] = frozenset()
    # The client's own Authorization header goes upstream (only the OAuth token endpoint).
    forward_authorization: bool = False
    regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        pattern = _PARAM.sub(
            r"[^/]+", re.escape(self.template).replace(r"\{", "{").replace(r"\}", "}")
        )
        object.__setattr__(self, "regex", re.compile("^" + pattern + "$"))

    @property
    def public(self) -> bool:
        return not self.kinds


def _r(
    method: str,
    template: str,
    upstream: str,
    kinds: frozenset[ClientKind],
    *scopes: str,
    forward_authorization: bool = False,
) -> Route:
    return Route(
        method,
        template,
        upstream,
        kinds,
        frozenset(scopes),
        forward_authorization=forward_authorization,
    )


ROUTES: tuple[Route, ...] = (
    # Auth (public)
    _r("POST", "/oauth/token", "identity", PUBLIC, forward_authorization=True),
    _r("GET", "/.well-known/oauth-authorization-server", "identity", PUBLIC),
    _r("GET", "/v1/whoami", "identity", ANY_CLIENT),
    # Real-name verification (partner apps)
    _r("POST", "/v1/verifications", "identity", PARTNER, "ecard:issue"),
    _r("POST", "/v1/verifications/{verification_id}/confirm", "identity", PARTNER, "ecard:issue"),
    # E-cards (partner apps)
    _r("POST", "/v1/ecards", "issuance", PARTNER, "ecard:issue"),
    _r("GET", "/v1/ecards/{ecard_id}", "issuance", PARTNER, "ecard:manage"),
    _r("DELETE", "/v1/ecards/{ecard_id}", "issuance", PARTNER, "ecard:manage"),
    _r("PUT", "/v1/ecards/{ecard_id}/pin", "issuance", PARTNER, "ecard:manage"),
    _r("POST", "/v1/ecards/{ecard_id}/payment", "issuance", PARTNER, "ecard:manage"),
    _r("POST", "/v1/ecards/{ecard_id}/suspend", "issuance", PARTNER, "ecard:manage"),
    _r("POST", "/v1/ecards/{ecard_id}/resume", "issuance", PARTNER, "ecard:manage"),
    _r("POST", "/v1/ecards/{ecard_id}/qrcodes", "issuance", PARTNER, "ecard:qr"),
    _r("GET", "/v1/ecards/{ecard_id}/qrcode.png", "issuance", PARTNER, "ecard:qr"),
    _r("POST", "/v1/ecards/{ecard_id}/h5-sessions", "issuance", PARTNER, "ecard:qr"),
    # Holder self-service (partner apps)
    _r("GET", "/v1/ecards/{ecard_id}/account", "settlement", PARTNER, "holder:enquiry"),
    _r("GET", "/v1/ecards/{ecard_id}/settlements", "settlement", PARTNER, "holder:enquiry"),
    # The e-card web page (authorised by the short-lived link itself)
    _r("GET", "/h5/ecard/{session_token}", "issuance", PUBLIC),
    _r("GET", "/h5/ecard/{session_token}/data", "issuance", PUBLIC),
    _r("POST", "/h5/ecard/{session_token}/qrcode", "issuance", PUBLIC),
    _r("GET", "/h5/static/{asset}", "issuance", PUBLIC),
    # Scanning (hospitals, scanners)
    _r("POST", "/v1/scans", "issuance", SCANNING, "scan"),
    # Settlement (hospitals)
    _r("GET", "/v1/policies/{region_code}", "settlement", HOSPITAL, "settlement:read"),
    _r("POST", "/v1/settlements/quotes", "settlement", HOSPITAL, "settlement:write"),
    _r("POST", "/v1/settlements", "settlement", HOSPITAL, "settlement:write"),
    _r("GET", "/v1/settlements/{settlement_id}", "settlement", HOSPITAL, "settlement:read"),
    _r(
        "POST",
        "/v1/settlements/{settlement_id}/refunds",
        "settlement",
        HOSPITAL,
        "settlement:write",
    ),
    _r("GET", "/v1/reconciliation/daily", "settlement", HOSPITAL, "reconciliation"),
    _r("POST", "/v1/reconciliation/checks", "settlement", HOSPITAL, "reconciliation"),
    # Operations
    _r("POST", "/v1/admin/clients", "identity", OPS, "ops"),
    _r("POST", "/v1/admin/clients/{client_id}/disable", "identity", OPS, "ops"),
    _r("POST", "/v1/admin/holders", "identity", OPS, "ops"),
    _r("POST", "/v1/admin/cards/{card_number}/status", "identity", OPS, "ops"),
    _r("GET", "/v1/admin/sms-outbox", "identity", OPS, "ops"),
    _r("GET", "/v1/admin/risk/alerts", "settlement", OPS, "ops"),
    _r("POST", "/v1/admin/risk/alerts/{alert_id}/resolve", "settlement", OPS, "ops"),
    _r("GET", "/v1/admin/ledger/check", "settlement", OPS, "ops"),
    # Answered by the gateway itself, after the same authentication.
    _r("POST", "/v1/admin/keys/rotate", "gateway", OPS, "ops"),
)


@dataclass(frozen=True)
class Match:
    """A lookup's outcome: a route, a known path with other methods, or nothing."""

    route: Route | None
    allowed_methods: tuple[str, ...] = ()


class RouteTable:
    """Routes indexed by their first two path segments, so a lookup tests a handful of patterns."""

    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        self.routes = routes
        self._index: dict[tuple[str, str], list[Route]] = {}
        self._wild: list[Route] = []
        for route in routes:
            key = _key(route.template)
            if "{" in key[0] or "{" in key[1]:
                self._wild.append(route)
            else:
                self._index.setdefault(key, []).append(route)

    def match(self, method: str, path: str) -> Match:
        """The route for ``method`` and ``path``; allowed methods when only the path matches."""
        candidates = self._index.get(_key(path), []) + self._wild
        allowed: list[str] = []
        for route in candidates:
            if route.regex.match(path):
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return Match(route)
                allowed.append(route.method)
        return Match(None, tuple(dict.fromkeys(allowed)))

    def upstreams(self) -> frozenset[str]:
        return frozenset(r.upstream for r in self.routes)


def _key(path: str) -> tuple[str, str]:
    parts = path.split("/", 3)
    return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
