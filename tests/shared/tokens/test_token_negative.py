"""Every case of the shared negative-token suite is refused, for every kind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared.tokens.claims import ACCESS, ALL_KINDS, TokenKind
from shared.tokens.codec import InvalidTokenError, sign_token, verify_token, verify_token_async
from shared.tokens.keys import KeyRing, ManagedKey
from shared.tokens.negative import negative_tokens

ClaimsFactory = Callable[..., dict[str, Any]]
KindFn = Callable[[TokenKind[Any]], str]
SignerFn = Callable[[TokenKind[Any]], ManagedKey]
KIND_IDS = [k.name for k in ALL_KINDS]

# The rule that must fire for a representative case of each attack family: a case refused
# for a different reason would mean it no longer tests what its name says.
EXPECTED_REASON = {
    "alg none, empty signature": "malformed",
    "alg none with a real signature": "unsupported header",
    "HS256 keyed with the public key PEM": "unsupported header",
    "HS256 keyed with the public key PEM, CRLF": "unsupported header",
    "HS256 keyed with the public JWK JSON": "unsupported header",
    "HS256 keyed with the raw x||y": "unsupported header",
    "ES256 by an unknown key": "unknown key",
    "ES256 by an unknown key claiming the real kid": "bad signature",
    "kid path-like": "unsupported header",
    "tampered payload": "bad signature",
    "wrong issuer": "wrong issuer",
    "issuer with a suffix": "wrong issuer",
    "issuer truncated (substring)": "wrong issuer",
    "array audience with the right one": "wrong audience",
    "audience truncated (substring)": "wrong audience",
    "expired beyond leeway": "expired",
    "iat far in the future": "not yet valid",
    "nbf in the future": "not yet valid",
    "lifetime too long": "lifetime too long",
    "lifetime too long, backdated iat": "lifetime too long",
    "missing jti": "missing claim",
    "missing aud": "missing claim",
    "jku header": "unsupported header",
    "embedded jwk, signed by it": "unsupported header",
    "oversized header (2 KB of whitespace)": "unsupported header",
    "deeply nested header value": "unsupported header",
    "duplicate alg in header": "malformed",
    "10 KB token": "malformed",
}


def _suite(
    kind: TokenKind[Any],
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
    iat: int,
) -> list[tuple[str, str]]:
    return negative_tokens(
        kind=kind,
        good_claims=claims_for(kind, iat=iat),
        signing_key=signer_for(kind),
        issuer=issuer_for(kind),
        audience=audience_for(kind),
    )


def _refusal(
    token: str, kind: TokenKind[Any], ring: KeyRing, issuer: str, audience: str, now: int | None
) -> str | None:
    """The refusal reason, or None if the token was accepted."""
    try:
        verify_token(
            token, kind, key_for_kid=ring.public_key, issuer=issuer, audience=audience, now=now
        )
    except InvalidTokenError as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("kind", ALL_KINDS, ids=KIND_IDS)
def test_every_negative_case_is_refused(
    kind: TokenKind[Any],
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
    now: int,
) -> None:
    issuer, audience = issuer_for(kind), audience_for(kind)
    cases = _suite(kind, claims_for, issuer_for, audience_for, signer_for, now)
    names = [name for name, _ in cases]
    assert len(names) == len(set(names))
    assert len(cases) >= 90
    # The suite can fail: a token made from the same good claims and key is accepted.
    model = kind.claims_model.model_validate(claims_for(kind, iat=now))
    good = sign_token(kind, model, signer_for(kind))
    assert _refusal(good, kind, ring, issuer, audience, now) is None

    reasons = {name: _refusal(token, kind, ring, issuer, audience, now) for name, token in cases}
    accepted = [name for name, reason in reasons.items() if reason is None]
    assert accepted == []
    wrong_rule = {
        name: reasons[name]
        for name, expected in EXPECTED_REASON.items()
        if reasons[name] != expected
    }
    assert wrong_rule == {}


def test_negative_suite_against_the_real_clock(
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
) -> None:
    """Services run the suite with fresh claims and no injected clock."""
    real_now = int(time.time())
    cases = _suite(ACCESS, claims_for, issuer_for, audience_for, signer_for, real_now)
    issuer, audience = issuer_for(ACCESS), audience_for(ACCESS)
    accepted = [n for n, t in cases if _refusal(t, ACCESS, ring, issuer, audience, None) is None]
    assert accepted == []


class _Keys:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def get_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        return self.ring.public_key(kid)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ALL_KINDS, ids=KIND_IDS)
async def test_every_negative_case_is_refused_async(
    kind: TokenKind[Any],
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
    now: int,
) -> None:
    accepted = []
    for name, token in _suite(kind, claims_for, issuer_for, audience_for, signer_for, now):
        try:
            await verify_token_async(
                token,
                kind,
                keys=_Keys(ring),
                issuer=issuer_for(kind),
                audience=audience_for(kind),
                now=now,
            )
        except InvalidTokenError:
            continue
        accepted.append(name)
    assert accepted == []
