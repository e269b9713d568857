"""Key identity (RFC 7638), the key ring and rotation."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.tokens.claims import ACCESS, AccessTokenClaims
from shared.tokens.codec import InvalidTokenError, sign_token, verify_token
from shared.tokens.keys import (
    KID_PREFIX_LEN,
    KeyNotFoundError,
    KeyRing,
    KeyState,
    ManagedKey,
    jwk_thumbprint,
    public_jwk,
)

ClaimsFactory = Callable[..., dict[str, Any]]
ISSUER = "https://auth.essc.test"
AUDIENCE = "https://gateway.essc.test"


def _rfc7638(jwk: dict[str, Any]) -> str:
    """Independent RFC 7638 §3: required members only, sorted, no whitespace, SHA-256."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"))
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    )


def test_thumbprint_matches_independent_rfc7638_computation() -> None:
    for _ in range(20):  # leading-zero coordinates must still be 32 bytes
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        pyjwt_jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        thumb = jwk_thumbprint(key)
        assert len(thumb) == 43
        assert thumb == _rfc7638(pyjwt_jwk)
        ours = public_jwk(key, thumb)
        assert (ours["x"], ours["y"]) == (pyjwt_jwk["x"], pyjwt_jwk["y"])


def test_thumbprint_known_answer() -> None:
    # RFC 7517 Appendix A.1 example P-256 key; a pinned vector so a change in the canonical
    # form (member order, padding, whitespace) cannot go unnoticed.
    x = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4"
    y = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(base64.urlsafe_b64decode(x + "="), "big"),
        int.from_bytes(base64.urlsafe_b64decode(y + "="), "big"),
        ec.SECP256R1(),
    )
    assert jwk_thumbprint(numbers.public_key()) == "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"


def test_public_jwk_members() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    jwk = public_jwk(key, "kid-1")
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"], jwk["kid"]) == (
        "EC",
        "P-256",
        "sig",
        "ES256",
        "kid-1",
    )


def test_other_curves_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        jwk_thumbprint(p384.public_key())


def test_managed_key_checks_kid_and_timestamps(now_dt: datetime) -> None:
    key = ManagedKey.generate("access", state=KeyState.CURRENT, now=now_dt)
    assert key.kid == jwk_thumbprint(key.public_key)
    with pytest.raises(ValueError, match="thumbprint"):
        replace(key, kid="A" * 43)
    with pytest.raises(ValueError, match="timezone"):
        replace(key, created_at=now_dt.replace(tzinfo=None))
    with pytest.raises(ValueError, match="purpose"):
        replace(key, purpose="../x")


def test_ring_lookups(ring: KeyRing) -> None:
    current = ring.signing_key("access")
    assert current.state is KeyState.CURRENT
    nxt = next(k for k in ring.keys if k.purpose == "access" and k.state is KeyState.NEXT)
    assert ring.public_key(current.kid) == current.public_key
    assert ring.public_key(nxt.kid) == nxt.public_key
    assert ring.public_key("unknown") is None
    assert ring.key_by_kid(nxt.kid) is nxt
    assert ring.key_by_kid_prefix("access", nxt.kid[:KID_PREFIX_LEN]) is nxt
    assert ring.key_by_kid_prefix("qr", nxt.kid[:KID_PREFIX_LEN]) is None
    assert ring.key_by_kid_prefix("access", nxt.kid[: KID_PREFIX_LEN - 1]) is None
    assert "qr" in ring.purposes
    with pytest.raises(KeyNotFoundError):
        ring.signing_key("nope")


def test_jwks_publishes_next_and_current(ring: KeyRing) -> None:
    doc = ring.jwks(["access"])
    kids = {k["kid"] for k in doc["keys"]}
    assert kids == {k.kid for k in ring.keys if k.purpose == "access"}
    assert len(kids) == 2
    assert all(set(k) == {"kty", "crv", "x", "y", "kid", "use", "alg"} for k in doc["keys"])
    assert len(ring.jwks()["keys"]) == len(ring.keys)


def test_ring_invariants(now_dt: datetime) -> None:
    a = ManagedKey.generate("access", state=KeyState.CURRENT, now=now_dt)
    b = ManagedKey.generate("access", state=KeyState.CURRENT, now=now_dt)
    with pytest.raises(ValueError, match="two current"):
        KeyRing([a, b])
    with pytest.raises(ValueError, match="duplicate kid"):
        KeyRing([a, replace(a, purpose="other")])
    n1 = replace(a, state=KeyState.NEXT)
    n2 = replace(b, state=KeyState.NEXT)
    with pytest.raises(ValueError, match="two next"):
        KeyRing([n1, n2])


def _sign(key: ManagedKey, claims_for: ClaimsFactory, iat: int) -> str:
    return sign_token(ACCESS, AccessTokenClaims.model_validate(claims_for(ACCESS, iat=iat)), key)


def _verifies(ring: KeyRing, token: str, at: int) -> bool:
    try:
        verify_token(
            token,
            ACCESS,
            key_for_kid=lambda kid: ring.public_key(kid, now=at),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=at,
        )
    except InvalidTokenError:
        return False
    return True


def test_rotation_lifecycle(
    ring: KeyRing, claims_for: ClaimsFactory, now: int, now_dt: datetime
) -> None:
    old = ring.signing_key("access")
    nxt = next(k for k in ring.keys if k.purpose == "access" and k.state is KeyState.NEXT)
    # The next key is published before it ever signs.
    assert nxt.kid in {k["kid"] for k in ring.jwks(["access"])["keys"]}
    token = _sign(old, claims_for, now)

    retain = timedelta(minutes=15)
    rotated = ring.rotated("access", now=now_dt, retain=retain)
    assert ring.signing_key("access") is old  # the original ring is unchanged
    new = rotated.signing_key("access")
    assert new.kid == nxt.kid
    previous = rotated.key_by_kid(old.kid)
    assert previous is not None
    assert previous.state is KeyState.PREVIOUS
    assert previous.retires_at == now_dt + retain
    fresh_next = [k for k in rotated.keys if k.purpose == "access" and k.state is KeyState.NEXT]
    assert len(fresh_next) == 1
    assert fresh_next[0].kid not in {old.kid, nxt.kid}
    published = {k["kid"] for k in rotated.jwks(["access"], now=now)["keys"]}
    assert published == {old.kid, nxt.kid, fresh_next[0].kid}
    # Other purposes are untouched.
    assert rotated.signing_key("qr").kid == ring.signing_key("qr").kid

    # New tokens carry the new kid; old tokens verify while the old key is retained, not after.
    new_token = _sign(new, claims_for, now)
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == new.kid
    assert _verifies(rotated, token, now + 60)
    assert _verifies(rotated, new_token, now + 60)
    retire_at = int((now_dt + retain).timestamp())
    assert rotated.public_key(old.kid, now=retire_at - 1) is not None
    assert rotated.public_key(old.kid, now=retire_at) is None
    assert old.kid not in {k["kid"] for k in rotated.jwks(["access"], now=retire_at)["keys"]}
    late_token = _sign(old, claims_for, retire_at - 10)
    assert _verifies(rotated, late_token, retire_at - 5)
    assert not _verifies(rotated, late_token, retire_at + 1)

    # The next rotation after retirement drops the old key entirely.
    later = rotated.rotated("access", now=now_dt + retain * 2, retain=retain)
    assert later.key_by_kid(old.kid) is None
    assert later.key_by_kid(nxt.kid) is not None
    assert later.signing_key("access").kid == fresh_next[0].kid


def test_rotation_without_next_key_and_unknown_purpose(now_dt: datetime) -> None:
    only = ManagedKey.generate("svc", state=KeyState.CURRENT, now=now_dt)
    ring = KeyRing([only])
    rotated = ring.rotated("svc", now=now_dt, retain=timedelta(0))
    assert rotated.signing_key("svc").kid != only.kid
    with pytest.raises(KeyNotFoundError):
        ring.rotated("other", now=now_dt, retain=timedelta(0))
    with pytest.raises(ValueError, match="retain"):
        ring.rotated("svc", now=now_dt, retain=timedelta(seconds=-1))


def test_generate_gives_current_and_next_per_purpose(now_dt: datetime) -> None:
    ring = KeyRing.generate(["a", "b"], now_dt)
    states = sorted((k.purpose, k.state.value) for k in ring.keys)
    assert states == [("a", "current"), ("a", "next"), ("b", "current"), ("b", "next")]
    assert ring.purposes == frozenset({"a", "b"})
