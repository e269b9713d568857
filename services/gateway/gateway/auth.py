"""The authenticated door: access tokens, kinds and scopes, rate limits, upstream credentials.

For each request to a protected route the gateway
1. verifies the client's ES256 ``at+jwt`` (identity's JWKS; issuer and audience
   pinned) — once per token: verified claims are cached until the token expires;
2. refuses tokens of clients that ops disabled (a set refreshed from identity
   every few seconds), so a disabled client stops within seconds, not at expiry;
3. checks the route's client kinds (403) and scopes (403);
4. applies the client's rate limit (429 with ``Retry-After``), keyed by the
   verified client id, in Redis when configured so replicas share the budget;
5. hands the upstream an internal token (``essc-internal+jwt``, audience the one
   service) carrying the caller's identity, minted once per token and service.

The backend verifies that internal token again; nothing unsigned crosses.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.routes import Route
from shared.asgi import Scope, header_value
from shared.auth import GATEWAY_ISSUER, INTERNAL_PURPOSE, service_urn
from shared.problems import ForbiddenError, RateLimitedError, UnauthorizedError
from shared.tokens.claims import ACCESS, INTERNAL, AccessTokenClaims, InternalTokenClaims
from shared.tokens.codec import (
    AsyncKeySource,
    InvalidTokenError,
    VerifiedTokenCache,
    sign_token,
    verify_token_async,
)
from shared.tokens.keys import KeyRing

logger = logging.getLogger("gateway.auth")

API_AUDIENCE = "urn:essc:api"


class RateLimiter:
    """Per-key request budgets with the ``limits`` library (Redis when configured)."""

    def __init__(self, storage_uri: str, *, client_rule: str, public_rule: str) -> None:
        from limits import parse
        from limits.aio.strategies import FixedWindowRateLimiter
        from limits.storage import storage_from_string

        self.storage = storage_from_string(storage_uri)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.client_item = parse(client_rule)
        self.public_item = parse(public_rule)

    async def check(self, key: str, *, public: bool = False) -> None:
        """Count one request for ``key``; 429 problem when its budget is spent."""
        item = self.public_item if public else self.client_item
        try:
            allowed = await self.limiter.hit(item, "gw", key)
        except Exception as exc:  # the limiter's store is down: fail open, loudly
            logger.warning("rate limiter unavailable: %s", type(exc).__name__)
            return
        if not allowed:
            stats = await self.limiter.get_window_stats(item, "gw", key)
            raise RateLimitedError(max(1, int(stats.reset_time - time.time()) + 1))


class InternalTokenCache:
    """Internal tokens per (access token id, upstream), reused until shortly before expiry."""

    def __init__(
        self, ring: Callable[[], KeyRing], *, max_entries: int = 50_000, lifetime: int = 300
    ) -> None:
        self._ring = ring
        self._tokens: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self.max_entries = max_entries
        self.lifetime = lifetime

    def token_for(self, claims: AccessTokenClaims, upstream: str) -> str:
        now = int(time.time())
        key = (claims.jti, upstream)
        hit = self._tokens.get(key)
        if hit is not None and hit[1] - 30 > now:
            return hit[0]
        exp = min(claims.exp, now + self.lifetime)
        internal = InternalTokenClaims(
            iss=GATEWAY_ISSUER,
            sub=claims.sub,
            aud=service_urn(upstream),
            iat=now,
            exp=max(exp, now + 1),
            jti=secrets.token_urlsafe(12),
            client_id=claims.client_id,
            kind=claims.kind,
            scope=claims.scope,
            region_code=claims.region_code,
            level=claims.level,
        )
        token = sign_token(INTERNAL, internal, self._ring().signing_key(INTERNAL_PURPOSE))
        self._tokens[key] = (token, internal.exp)
        if len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)
        return token


class ClientAuthenticator:
    """Implements :class:`gateway.proxy.Authenticator` for the public routes."""

    def __init__(
        self,
        *,
        issuer: str,
        keys: AsyncKeySource,
        ring: Callable[[], KeyRing],
        limiter: RateLimiter,
        disabled: Callable[[], frozenset[str]],
        on_cache: Callable[[bool], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self.keys = keys
        self.verified: VerifiedTokenCache[AccessTokenClaims] = VerifiedTokenCache()
        self.internal = InternalTokenCache(ring)
        self.limiter = limiter
        self.disabled = disabled
        self.on_cache = on_cache or (lambda _hit: None)

    async def verify(self, token: str) -> AccessTokenClaims:
        """The access token's verified claims (cached), or a 401 problem."""
        claims = self.verified.get(token)
        if claims is not None:
            self.on_cache(True)
            return claims
        self.on_cache(False)
        try:
            claims = await verify_token_async(
                token, ACCESS, keys=self.keys, issuer=self.issuer, audience=API_AUDIENCE
            )
        except InvalidTokenError as exc:
            raise UnauthorizedError(f"The access token was rejected: {exc.reason}.") from None
        self.verified.put(token, claims)
        return claims

    async def authorize(self, route: Route, scope: Scope) -> str | None:
        if route.public:
            client = scope.get("client")
            await self.limiter.check(client[0] if client else "unknown", public=True)
            return None
        raw = header_value(scope, b"authorization")
        if raw is None:
            raise UnauthorizedError(
                "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"}
            )
        scheme, _, token = raw.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("The Authorization header must be 'Bearer <token>'.")
        claims = await self.verify(token)
        if claims.client_id in self.disabled():
            raise UnauthorizedError("The client is disabled.")
        if route.kinds and claims.kind not in route.kinds:
            raise ForbiddenError("This client kind may not use this operation.")
        if not route.scopes <= claims.scopes:
            missing = " ".join(sorted(route.scopes - claims.scopes))
            raise ForbiddenError(f"Missing scope: {missing}.")
        await self.limiter.check(claims.client_id)
        scope["essc.client_id"] = claims.client_id
        if route.upstream == "gateway":
            scope["essc.principal"] = claims
            return None
        return "Bearer " + self.internal.token_for(claims, route.upstream)
