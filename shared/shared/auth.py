"""Who is calling a backend service: internal tokens, their verification and the route guards.

The gateway verifies a client's access token and re-signs the caller's identity
as an ``essc-internal+jwt`` whose audience is the one backend it forwards to.
Services calling each other sign the same kind with their own keys
(``kind=service``). A backend trusts nothing else: no unsigned header, no token
for another audience. Verified tokens are cached until they expire, so the
ES256 check runs once per token, not once per request.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from shared.problems import ForbiddenError, UnauthorizedError
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import (
    AsyncKeySource,
    InvalidTokenError,
    VerifiedTokenCache,
    sign_token,
    verify_token_async,
)
from shared.tokens.keys import KeyRing

GATEWAY_ISSUER = "urn:essc:gateway"
INTERNAL_PURPOSE = "internal"


def service_urn(name: str) -> str:
    """The issuer/audience identifier of a cluster part, e.g. ``urn:essc:issuance``."""
    return f"urn:essc:{name}"


class RingKeySource:
    """An :class:`AsyncKeySource` over a key ring this process holds (its own keys)."""

    def __init__(self, ring_getter: Callable[[], KeyRing]) -> None:
        self._ring_getter = ring_getter

    async def get_key(self, kid: str) -> Any:
        return self._ring_getter().public_key(kid)


def _unverified_issuer(token: str) -> str | None:
    """Peek at ``iss`` only to choose which key set to verify with; the check pins it after."""
    try:
        payload = token.split(".")[1]
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except Exception:
        return None
    iss = data.get("iss") if isinstance(data, dict) else None
    return iss if isinstance(iss, str) else None


class InternalTokenVerifier:
    """Verifies internal tokens addressed to one service, from a fixed set of trusted issuers."""

    def __init__(
        self, *, audience: str, issuers: Mapping[str, AsyncKeySource], cache_size: int = 50_000
    ) -> None:
        self.audience = audience
        self.issuers = dict(issuers)
        self.cache: VerifiedTokenCache[InternalTokenClaims] = VerifiedTokenCache(
            max_entries=cache_size
        )

    async def verify(self, token: str) -> InternalTokenClaims:
        """The verified claims, or :class:`InvalidTokenError`."""
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        issuer = _unverified_issuer(token)
        source = self.issuers.get(issuer) if issuer else None
        if source is None or issuer is None:
            raise InvalidTokenError("wrong issuer")
        claims = await verify_token_async(
            token, INTERNAL, keys=source, issuer=issuer, audience=self.audience
        )
        self.cache.put(token, claims)
        return claims


def bearer_token(request: Request) -> str:
    """The bearer credential of a request, or a 401 problem."""
    header = request.headers.get("authorization")
    if not header:
        raise UnauthorizedError(
            "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"}
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


async def current_principal(request: Request) -> InternalTokenClaims:
    """FastAPI dependency: the verified caller of this request (401 otherwise)."""
    verifier: InternalTokenVerifier = request.app.state.internal_verifier
    token = bearer_token(request)
    try:
        return await verifier.verify(token)
    except InvalidTokenError as exc:
        raise UnauthorizedError(f"The bearer token was rejected: {exc.reason}.") from None


PrincipalDep = Annotated[InternalTokenClaims, Depends(current_principal)]


def require(
    *, scopes: Iterable[str] = (), kinds: Iterable[ClientKind] = ()
) -> Callable[[InternalTokenClaims], Awaitable[InternalTokenClaims]]:
    """A dependency that admits callers of one of ``kinds`` holding every scope in ``scopes``.

    A wrong kind or a missing scope is 403; a missing or bad token is 401.
    """
    needed = frozenset(scopes)
    allowed = frozenset(kinds)

    async def guard(principal: PrincipalDep) -> InternalTokenClaims:
        if allowed and principal.kind not in allowed:
            raise ForbiddenError("This client kind may not use this operation.")
        if not needed <= principal.scopes:
            missing = " ".join(sorted(needed - principal.scopes))
            raise ForbiddenError(f"Missing scope: {missing}.")
        return principal

    return guard


class ServiceTokenMinter:
    """Signs this service's internal tokens for calls to a peer, reusing each until near expiry."""

    def __init__(
        self, *, service: str, ring_getter: Callable[[], KeyRing], lifetime: int = 300
    ) -> None:
        self.service = service
        self._ring_getter = ring_getter
        self.lifetime = min(lifetime, INTERNAL.max_lifetime)
        self._cache: dict[str, tuple[str, float]] = {}

    def token_for(self, target: str) -> str:
        """A bearer token addressed to ``service_urn(target)``."""
        now = time.time()
        hit = self._cache.get(target)
        if hit is not None and hit[1] - 60 > now:
            return hit[0]
        key = self._ring_getter().signing_key(INTERNAL_PURPOSE)
        iat = int(now)
        claims = InternalTokenClaims(
            iss=service_urn(self.service),
            sub=f"service:{self.service}",
            aud=service_urn(target),
            iat=iat,
            exp=iat + self.lifetime,
            jti=secrets.token_urlsafe(16),
            client_id=f"service:{self.service}",
            kind=ClientKind.SERVICE,
            scope="internal",
        )
        token = sign_token(INTERNAL, claims, key)
        self._cache[target] = (token, float(claims.exp))
        return token


def require_service(*names: str) -> Callable[[InternalTokenClaims], Awaitable[InternalTokenClaims]]:
    """A dependency admitting only the named peer services (by their own signed tokens)."""
    allowed = frozenset(f"service:{n}" for n in names)

    async def guard(principal: PrincipalDep) -> InternalTokenClaims:
        if principal.kind is not ClientKind.SERVICE or principal.client_id not in allowed:
            raise ForbiddenError("Internal operation.")
        return principal

    return guard
