"""sign_token / verify_token / verify_token_async and the verified-token cache."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.tokens.claims import (
    ACCESS,
    ALL_KINDS,
    CLIENT_ASSERTION,
    INTERNAL,
    AccessTokenClaims,
    RegisteredClaims,
    TokenKind,
)
from shared.tokens.codec import (
    InvalidTokenError,
    VerifiedTokenCache,
    sign_token,
    verify_token,
    verify_token_async,
)
from shared.tokens.keys import KeyRing, ManagedKey

ClaimsFactory = Callable[..., dict[str, Any]]
KindFn = Callable[[TokenKind[Any]], str]
SignerFn = Callable[[TokenKind[Any]], ManagedKey]
KIND_IDS = [k.name for k in ALL_KINDS]


def _header(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.split(".")[0] + "==")


def _mint(
    kind: TokenKind[Any], claims: dict[str, Any], signer_for: SignerFn
) -> tuple[str, RegisteredClaims]:
    model = kind.claims_model.model_validate(claims)
    return sign_token(kind, model, signer_for(kind)), model


@pytest.mark.parametrize("kind", ALL_KINDS, ids=KIND_IDS)
def test_round_trip_every_kind(
    kind: TokenKind[Any],
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
    now: int,
) -> None:
    token, model = _mint(kind, claims_for(kind), signer_for)
    key = signer_for(kind)
    assert _header(token) == f'{{"alg":"ES256","kid":"{key.kid}","typ":"{kind.typ}"}}'.encode()
    verified = verify_token(
        token,
        kind,
        key_for_kid=ring.public_key,
        issuer=issuer_for(kind),
        audience=audience_for(kind),
        now=now + 10,
    )
    assert type(verified) is kind.claims_model
    assert verified == model


@pytest.mark.parametrize(
    ("signed_as", "verified_as"),
    list(itertools.permutations(ALL_KINDS, 2)),
    ids=[f"{a.name}-as-{b.name}" for a, b in itertools.permutations(ALL_KINDS, 2)],
)
def test_no_kind_passes_for_another(
    signed_as: TokenKind[Any],
    verified_as: TokenKind[Any],
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    audience_for: KindFn,
    signer_for: SignerFn,
    now: int,
) -> None:
    token, _ = _mint(signed_as, claims_for(signed_as), signer_for)
    # With the verifier's own issuer/audience the typ separates the kinds ...
    with pytest.raises(InvalidTokenError) as info:
        verify_token(
            token,
            verified_as,
            key_for_kid=ring.public_key,
            issuer=issuer_for(verified_as),
            audience=audience_for(verified_as),
            now=now,
        )
    assert info.value.reason == "wrong type"
    # ... and with the token's own issuer/audience too: typ is checked before anything else.
    with pytest.raises(InvalidTokenError, match="wrong type"):
        verify_token(
            token,
            verified_as,
            key_for_kid=ring.public_key,
            issuer=issuer_for(signed_as),
            audience=audience_for(signed_as),
            now=now,
        )


@pytest.mark.parametrize("kind", ALL_KINDS, ids=KIND_IDS)
def test_audience_separates_tokens_of_one_kind(
    kind: TokenKind[Any],
    ring: KeyRing,
    claims_for: ClaimsFactory,
    issuer_for: KindFn,
    signer_for: SignerFn,
    now: int,
) -> None:
    token, _ = _mint(kind, claims_for(kind, aud="service-a"), signer_for)
    with pytest.raises(InvalidTokenError, match="wrong audience"):
        verify_token(
            token,
            kind,
            key_for_kid=ring.public_key,
            issuer=issuer_for(kind),
            audience="service-b",
            now=now,
        )


def test_client_assertion_typ_variants(
    ring: KeyRing, claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    key = signer_for(CLIENT_ASSERTION)
    claims = claims_for(CLIENT_ASSERTION)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    outcomes: dict[str | None, str] = {}
    for typ in (None, "JWT", "client-authentication+jwt", "jwt", "at+jwt"):
        header = {"alg": "ES256", "kid": key.kid} | ({} if typ is None else {"typ": typ})
        try:
            verify_token(
                _resign(header, payload, key),
                CLIENT_ASSERTION,
                key_for_kid=ring.public_key,
                issuer=claims["iss"],
                audience=claims["aud"],
                now=now,
            )
            outcomes[typ] = "accepted"
        except InvalidTokenError as exc:
            outcomes[typ] = exc.reason
    assert outcomes == {
        None: "accepted",
        "JWT": "accepted",
        "client-authentication+jwt": "accepted",
        "jwt": "wrong type",
        "at+jwt": "wrong type",
    }


def _resign(header: dict[str, Any], payload_segment: str, key: ManagedKey) -> str:
    h = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    signing_input = f"{h}.{payload_segment}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    sig = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).rstrip(b"=")
    return f"{signing_input}.{sig.decode()}"


def _verify_access(token: str, ring: KeyRing, **kwargs: Any) -> AccessTokenClaims:
    return verify_token(
        token,
        ACCESS,
        key_for_kid=ring.public_key,
        issuer="https://auth.essc.test",
        audience="https://gateway.essc.test",
        **kwargs,
    )


def test_time_checks_use_the_given_clock_and_cap_leeway(
    ring: KeyRing, claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    token, _ = _mint(ACCESS, claims_for(ACCESS, iat=now, exp=now + 600), signer_for)
    assert _verify_access(token, ring, now=now + 600 + 29).iat == now  # within 30 s leeway
    with pytest.raises(InvalidTokenError, match="expired"):
        _verify_access(token, ring, now=now + 600 + 30)
    with pytest.raises(InvalidTokenError, match="expired"):
        _verify_access(token, ring, now=now + 600 + 60, leeway=3600)  # leeway capped at 30
    with pytest.raises(InvalidTokenError, match="expired"):
        _verify_access(token, ring, now=now + 600, leeway=0)
    assert _verify_access(token, ring, now=now - 30).iat == now  # clock skew within leeway
    with pytest.raises(InvalidTokenError, match="not yet valid"):
        _verify_access(token, ring, now=now - 31)
    # Without ``now`` the system clock decides.
    real_now = int(time.time())
    stale, _ = _mint(ACCESS, claims_for(ACCESS, iat=real_now - 700, exp=real_now - 100), signer_for)
    with pytest.raises(InvalidTokenError, match="expired"):
        _verify_access(stale, ring)
    fresh, _ = _mint(ACCESS, claims_for(ACCESS, iat=real_now, exp=real_now + 60), signer_for)
    assert _verify_access(fresh, ring).iat == real_now


def test_nbf_is_honoured(
    ring: KeyRing, claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    token, _ = _mint(ACCESS, claims_for(ACCESS, nbf=now + 100), signer_for)
    with pytest.raises(InvalidTokenError, match="not yet valid"):
        _verify_access(token, ring, now=now + 69)
    assert _verify_access(token, ring, now=now + 70).nbf == now + 100


def test_sign_refuses_bad_lifetimes_and_wrong_models(
    claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    key = signer_for(ACCESS)
    too_long = AccessTokenClaims.model_validate(claims_for(ACCESS, exp=now + 601))
    with pytest.raises(ValueError, match="lifetime"):
        sign_token(ACCESS, too_long, key)
    backwards = AccessTokenClaims.model_validate(claims_for(ACCESS, exp=now))
    with pytest.raises(ValueError, match="lifetime"):
        sign_token(ACCESS, backwards, key)
    internal_claims = INTERNAL.claims_model.model_validate(claims_for(INTERNAL))
    assert sign_token(INTERNAL, internal_claims, key)
    wrong_model: Any = RegisteredClaims.model_validate(claims_for(ACCESS))
    with pytest.raises(ValueError, match="AccessTokenClaims"):
        sign_token(ACCESS, wrong_model, key)
    exact = AccessTokenClaims.model_validate(claims_for(ACCESS, exp=now + 600))
    assert sign_token(ACCESS, exact, key).count(".") == 2


def test_key_lookup_only_after_header_checks(
    ring: KeyRing, claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    looked_up: list[str] = []

    def lookup(kid: str) -> ec.EllipticCurvePublicKey | None:
        looked_up.append(kid)
        return ring.public_key(kid)

    token, _ = _mint(ACCESS, claims_for(ACCESS), signer_for)
    bad_typ, _ = _mint(INTERNAL, claims_for(INTERNAL), signer_for)
    for bad in ("x.y.z", bad_typ, 42):
        with pytest.raises(InvalidTokenError):
            verify_token(
                bad,  # type: ignore[arg-type]
                ACCESS,
                key_for_kid=lookup,
                issuer="https://auth.essc.test",
                audience="https://gateway.essc.test",
                now=now,
            )
    assert looked_up == []
    verify_token(
        token,
        ACCESS,
        key_for_kid=lookup,
        issuer="https://auth.essc.test",
        audience="https://gateway.essc.test",
        now=now,
    )
    assert looked_up == [signer_for(ACCESS).kid]


class _FakeKeySource:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.calls: list[str] = []

    async def get_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        self.calls.append(kid)
        return self.ring.public_key(kid)


@pytest.mark.asyncio
async def test_verify_token_async(
    ring: KeyRing, claims_for: ClaimsFactory, signer_for: SignerFn, now: int
) -> None:
    source = _FakeKeySource(ring)
    token, model = _mint(ACCESS, claims_for(ACCESS), signer_for)
    verified = await verify_token_async(
        token,
        ACCESS,
        keys=source,
        issuer="https://auth.essc.test",
        audience="https://gateway.essc.test",
        now=now,
    )
    assert verified == model
    assert source.calls == [signer_for(ACCESS).kid]
    with pytest.raises(InvalidTokenError, match="wrong type"):
        await verify_token_async(
            token,
            INTERNAL,
            keys=source,
            issuer="https://auth.essc.test",
            audience="https://gateway.essc.test",
            now=now,
        )
    with pytest.raises(InvalidTokenError, match="expired"):
        await verify_token_async(
            token,
            ACCESS,
            keys=source,
            issuer="https://auth.essc.test",
            audience="https://gateway.essc.test",
            now=now + 3600,
        )
    assert len(source.calls) == 2  # the wrong-typ token never reached the key source


def test_verified_token_cache(claims_for: ClaimsFactory, now: int) -> None:
    clock = [float(now)]
    cache: VerifiedTokenCache[AccessTokenClaims] = VerifiedTokenCache(3, clock=lambda: clock[0])
    claims = {
        name: AccessTokenClaims.model_validate(claims_for(ACCESS, exp=now + ttl))
        for name, ttl in [("a", 100), ("b", 200), ("c", 300), ("d", 400)]
    }
    assert cache.get("a") is None
    for name in "abc":
        cache.put(name, claims[name])
    assert cache.get("a") is claims["a"]
    assert (cache.hits, cache.misses) == (1, 1)

    cache.put("d", claims["d"])  # full: the oldest insertion ("a") goes
    assert len(cache) == 3
    assert cache.get("a") is None
    assert cache.get("d") is claims["d"]

    clock[0] = now + 200  # "b" expires exactly now
    assert cache.get("b") is None
    assert len(cache) == 2
    assert cache.get("c") is claims["c"]

    cache.put("b", claims["b"])  # already expired: not stored
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    assert cache.get("c") is None
    assert (cache.hits, cache.misses) == (3, 4)
    with pytest.raises(ValueError, match="max_entries"):
        VerifiedTokenCache(0)


def test_verified_token_cache_drops_expired_tokens_nobody_presents_again(
    claims_for: ClaimsFactory, now: int
) -> None:
    """Clients refresh their tokens: the old ones are never looked up again (the soak's RSS)."""
    clock = [float(now)]
    cache: VerifiedTokenCache[AccessTokenClaims] = VerifiedTokenCache(1000, clock=lambda: clock[0])
    for i in range(50):  # a token a minute, each living five minutes, never presented again
        clock[0] = now + 60 * i
        claims = AccessTokenClaims.model_validate(claims_for(ACCESS, exp=now + 60 * i + 300))
        cache.put(f"t{i}", claims)
        assert len(cache) <= 5  # the live ones only, not up to the bound
    assert cache.get("t49") is not None
    assert cache.get("t44") is None  # expired at now + 60 * 44 + 300 = now + 60 * 49


def test_verified_token_cache_default_bound() -> None:
    cache: VerifiedTokenCache[AccessTokenClaims] = VerifiedTokenCache()
    assert cache.max_entries == 50_000
