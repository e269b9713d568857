"""Client public keys: validating a registered JWKS and turning it into verification keys.

Only P-256 keys for ES256 signatures are accepted (the platform's one algorithm);
private members are refused outright; a key without ``kid`` gets its RFC 7638
thumbprint.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from shared.tokens.keys import jwk_thumbprint, public_jwk

MAX_KEYS = 10
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


class JwksInvalidError(ValueError):
    """The JWKS is not acceptable; the message is safe to show."""


def _b64u_int(value: Any) -> int:
    if not isinstance(value, str) or len(value) > 64:
        raise JwksInvalidError("x and y must be base64url strings")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise JwksInvalidError("x and y must be base64url strings") from None
    if len(raw) != 32:
        raise JwksInvalidError("x and y must be 32-byte P-256 coordinates")
    return int.from_bytes(raw, "big")


def _public_key(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise JwksInvalidError("only EC P-256 keys (ES256) are accepted")
    if jwk.get("alg") not in (None, "ES256") or jwk.get("use") not in (None, "sig"):
        raise JwksInvalidError("keys must be for ES256 signatures")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise JwksInvalidError("the JWKS must not contain private key material")
    numbers = ec.EllipticCurvePublicNumbers(
        _b64u_int(jwk.get("x")), _b64u_int(jwk.get("y")), ec.SECP256R1()
    )
    try:
        return numbers.public_key()
    except ValueError:
        raise JwksInvalidError("a key is not a point on P-256") from None


def normalize_jwks(doc: Any) -> dict[str, list[dict[str, str]]]:
    """A validated ``{"keys": [...]}`` of public P-256 JWKs with kids; JwksInvalidError else."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksInvalidError('a JWKS is an object with a "keys" list')
    keys = doc["keys"]
    if not 1 <= len(keys) <= MAX_KEYS:
        raise JwksInvalidError(f"a JWKS holds 1 to {MAX_KEYS} keys")
    out: list[dict[str, str]] = []
    kids: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise JwksInvalidError("each key is a JSON object")
        key = _public_key(jwk)
        kid = jwk.get("kid") or jwk_thumbprint(key)
        if (
            not isinstance(kid, str)
            or not 1 <= len(kid) <= 64
            or not kid.replace("-", "").replace("_", "").isalnum()
        ):
            raise JwksInvalidError("kid must be 1 to 64 base64url characters")
        if kid in kids:
            raise JwksInvalidError("kids must be unique")
        kids.add(kid)
        out.append(public_jwk(key, kid))
    return {"keys": out}


def keys_by_kid(jwks: dict[str, Any]) -> dict[str, ec.EllipticCurvePublicKey]:
    """Verification keys of a normalized JWKS, by kid."""
    return {k["kid"]: _public_key(k) for k in jwks.get("keys", [])}
