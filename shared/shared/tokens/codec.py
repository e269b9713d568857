"""Signing and verification of platform JWTs (ES256 only), and the verified-token cache.

This module owns the verification rules every service applies (RFC 8725, security.md
"Tokens"): a strict header allow-list checked before any key lookup, one pinned algorithm, one
``typ`` per kind, exact issuer and audience, required claims, bounded leeway and lifetime, and
finally the kind's claims model. ``verify_token`` and ``verify_token_async`` share every rule.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from shared.tokens.claims import C, TokenKind
from shared.tokens.keys import ManagedKey

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_LEEWAY",
    "MAX_TOKEN_CHARS",
    "AsyncKeySource",
    "InvalidTokenError",
    "VerifiedTokenCache",
    "sign_token",
    "verify_token",
    "verify_token_async",
]

MAX_TOKEN_CHARS = 4096
MAX_HEADER_BYTES = 1024
MAX_LEEWAY = 30
_ALG = "ES256"
_ALLOWED_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]


class InvalidTokenError(Exception):
    """The token was refused; ``reason`` is short and safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AsyncKeySource(Protocol):
    """Something that resolves a kid to a P-256 public key asynchronously (e.g. JwksCache)."""

    async def get_key(self, kid: str) -> ec.EllipticCurvePublicKey | None: ...


def _fail(reason: str) -> NoReturn:
    raise InvalidTokenError(reason)


def sign_token(kind: TokenKind[C], claims: C, key: ManagedKey) -> str:
    """Sign ``claims`` as a token of ``kind`` with ``key`` (ES256, compact JWS).

    The header is exactly ``{"alg":"ES256","kid":key.kid,"typ":kind.typ}``. Raises ValueError
    if ``claims`` is not an instance of the kind's model, if ``exp <= iat`` or if
    ``exp - iat`` exceeds ``kind.max_lifetime``. No side effects.
    """
    if not isinstance(claims, kind.claims_model):
        raise ValueError(f"{kind.name} tokens carry {kind.claims_model.__name__} claims")
    lifetime = claims.exp - claims.iat
    if lifetime <= 0 or lifetime > kind.max_lifetime:
        raise ValueError(f"{kind.name} token lifetime must be in 1..{kind.max_lifetime} s")
    payload = claims.model_dump(mode="json", exclude_none=True)
    return jwt.encode(
        payload, key.private_key, algorithm=_ALG, headers={"kid": key.kid, "typ": kind.typ}
    )


@dataclass(frozen=True, slots=True)
class _Header:
    kid: str


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


# Parsed header segments → (kid, typ). Headers repeat (one per signing key and kind), so this
# saves the JSON parse on the hot path; only segments that passed every check are stored, and
# the result is a pure function of the segment. Bounded: cleared when full.
_HEADER_CACHE: dict[str, tuple[str, str | None]] = {}
_HEADER_CACHE_MAX = 256


def _parse_header_segment(segment: str) -> tuple[str, str | None]:
    """Return (kid, typ) of a header segment that passes every key-independent rule."""
    cached = _HEADER_CACHE.get(segment)
    if cached is not None:
        return cached
    try:
        raw = _b64decode(segment)
    except (binascii.Error, ValueError):
        _fail("malformed")
    if len(raw) > MAX_HEADER_BYTES:
        _fail("unsupported header")
    try:
        header = json.loads(raw, object_pairs_hook=_reject_duplicate_keys)
    except (ValueError, RecursionError):
        _fail("malformed")
    if not isinstance(header, dict):
        _fail("malformed")
    # Only alg/typ/kid, all plain strings: jku, x5u, jwk, x5c, crit, b64... are refused here,
    # so no key material or URL from the token is ever looked at (RFC 8725 §3.10).
    if not header.keys() <= _ALLOWED_HEADER_KEYS or not all(
        isinstance(v, str) for v in header.values()
    ):
        _fail("unsupported header")
    if header.get("alg") != _ALG:
        _fail("unsupported header")
    kid = header.get("kid")
    if kid is None or not _KID_RE.fullmatch(kid):
        _fail("unsupported header")
    parsed = (kid, header.get("typ"))
    if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
        _HEADER_CACHE.clear()
    _HEADER_CACHE[segment] = parsed
    return parsed


def _parse_header(token: object, kind: TokenKind[Any]) -> _Header:
    """Apply every rule that needs no key: shape, header allow-list, alg, typ and kid form."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        _fail("malformed")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT_RE.fullmatch(p) for p in parts):
        _fail("malformed")
    kid, typ = _parse_header_segment(parts[0])
    if typ is None:
        if not kind.allow_missing_typ:
            _fail("wrong type")
    elif typ not in kind.accepted_typs:
        _fail("wrong type")
    return _Header(kid=kid)


def _numeric(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if type(value) is not int:
        _fail("invalid claims")
    return value


def _verify_with_key(
    token: str,
    kind: TokenKind[C],
    key: ec.EllipticCurvePublicKey | None,
    *,
    issuer: str,
    audience: str,
    now: float | None,
    leeway: int,
) -> C:
    """Signature, registered-claim and model checks, once the key has been resolved."""
    if key is None:
        _fail("unknown key")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALG],
            audience=audience,
            issuer=issuer,
            options={
                "require": _REQUIRED,
                "strict_aud": True,
                # Time claims are checked below against the caller's clock (pyjwt has none).
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        _fail("bad signature")
    except jwt.MissingRequiredClaimError:
        _fail("missing claim")
    except jwt.InvalidAudienceError:
        _fail("wrong audience")
    except jwt.InvalidIssuerError:
        _fail("wrong issuer")
    except jwt.InvalidAlgorithmError:
        _fail("unsupported header")
    except jwt.DecodeError:
        _fail("malformed")
    except jwt.PyJWTError:
        _fail("invalid claims")
    # Belt and braces: exact single-string audience and issuer whatever pyjwt's version does.
    aud, iss = payload.get("aud"), payload.get("iss")
    if type(aud) is not str or aud != audience:
        _fail("wrong audience")
    if type(iss) is not str or iss != issuer:
        _fail("wrong issuer")
    exp, iat, nbf = _numeric(payload, "exp"), _numeric(payload, "iat"), _numeric(payload, "nbf")
    if exp is None or iat is None:
        _fail("missing claim")
    slack = max(0, min(leeway, MAX_LEEWAY))
    current = time.time() if now is None else now
    if current >= exp + slack:
        _fail("expired")
    if iat > current + slack or (nbf is not None and nbf > current + slack):
        _fail("not yet valid")
    if exp <= iat:
        _fail("invalid claims")
    if exp - iat > kind.max_lifetime:
        _fail("lifetime too long")
    try:
        return kind.claims_model.model_validate(payload)
    except ValidationError:
        _fail("invalid claims")


def verify_token(
    token: str,
    kind: TokenKind[C],
    *,
    key_for_kid: Callable[[str], ec.EllipticCurvePublicKey | None],
    issuer: str,
    audience: str,
    now: int | None = None,
    leeway: int = MAX_LEEWAY,
) -> C:
    """Verify a token of ``kind`` and return its validated claims.

    ``key_for_kid`` is only called with a kid matching ``[A-Za-z0-9_-]{1,64}`` after the header
    passed the allow-list; ``now`` (unix seconds) defaults to the system clock; ``leeway`` is
    clamped to 0..30 s. Raises InvalidTokenError (with a client-safe ``reason``) on any
    failure. No side effects beyond calling ``key_for_kid``.
    """
    header = _parse_header(token, kind)
    return _verify_with_key(
        token,
        kind,
        key_for_kid(header.kid),
        issuer=issuer,
        audience=audience,
        now=now,
        leeway=leeway,
    )


async def verify_token_async(
    token: str,
    kind: TokenKind[C],
    *,
    keys: AsyncKeySource,
    issuer: str,
    audience: str,
    now: int | None = None,
    leeway: int = MAX_LEEWAY,
) -> C:
    """Like ``verify_token`` but resolves the kid through ``keys.get_key`` (awaited once).

    Header rules are applied before the key source is consulted, so a malformed or hostile
    header never triggers a JWKS fetch. Raises InvalidTokenError.
    """
    header = _parse_header(token, kind)
    key = await keys.get_key(header.kid)
    return _verify_with_key(
        token, kind, key, issuer=issuer, audience=audience, now=now, leeway=leeway
    )


class VerifiedTokenCache(Generic[C]):
    """Bounded map from a verified token string to its claims, until the claims expire.

    Use one cache per (kind, issuer, audience): a hit skips verification entirely. Keys are
    the whole token string (never part of it: a signature alone does not bind a payload).
    When full, the oldest insertion is evicted. Not thread-safe; fine within one event loop.
    """

    __slots__ = ("_clock", "_entries", "_max_entries", "hits", "misses")

    def __init__(
        self, max_entries: int = 50_000, *, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, C] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_entries(self) -> int:
        """The bound on the number of cached tokens."""
        return self._max_entries

    def get(self, token: str) -> C | None:
        """Return the cached claims if present and not expired (an expired entry is dropped)."""
        claims = self._entries.get(token)
        if claims is None:
            self.misses += 1
            return None
        if self._clock() >= claims.exp:
            del self._entries[token]
            self.misses += 1
            return None
        self.hits += 1
        return claims

    def put(self, token: str, claims: C) -> None:
        """Remember claims verified for ``token``; drops the expired entries at the old end
        first, then evicts the oldest entry when still full."""
        now = self._clock()
        if now >= claims.exp:
            return
        entries = self._entries
        # Tokens no one presents again (a client fetched a new one) would otherwise stay until
        # the bound pushed them out: ~2 KiB each, 100 MiB at 50 000, a slow RSS climb (the soak).
        # One kind's tokens have similar lifetimes, so insertion order is close to expiry order.
        while entries:
            oldest = next(iter(entries))
            if entries[oldest].exp > now:
                break
            del entries[oldest]
        if token not in entries and len(entries) >= self._max_entries:
            del entries[next(iter(entries))]
        entries[token] = claims

    def clear(self) -> None:
        """Drop every entry (e.g. after a key was withdrawn); counters are kept."""
        self._entries.clear()
