"""The negative-token suite: tokens every verifier on the platform must refuse.

This module owns the list of attacks from RFC 8725 and security.md "Tokens" as concrete
tokens, so each service's tests (unit or HTTP, expecting 401) run the same cases. Tokens are
built by hand where pyjwt refuses to produce them (``alg: none``, HS256 keyed with the public
key). Where a case targets one rule, everything else about the token is valid: e.g. the ``jku``
token is correctly signed by the real key, so only the header rule can reject it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from shared.tokens.claims import ALL_KINDS, TokenKind
from shared.tokens.keys import ManagedKey, jwk_thumbprint, public_jwk

__all__ = ["negative_tokens"]

Signer = Callable[[bytes], bytes]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _es256(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def _hmac(secret: bytes, digest: str = "sha256") -> Signer:
    return lambda data: hmac.new(secret, data, getattr(hashlib, digest)).digest()


def _no_signature(_: bytes) -> bytes:
    return b""


def _jws(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, sign: Signer) -> str:
    h = header if isinstance(header, bytes) else _json(header)
    p = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{_b64(h)}.{_b64(p)}"
    return f"{signing_input}.{_b64(sign(signing_input.encode('ascii')))}"


def negative_tokens(
    *,
    kind: TokenKind[Any],
    good_claims: dict[str, Any],
    signing_key: ManagedKey,
    issuer: str,
    audience: str,
) -> list[tuple[str, str]]:
    """Return ``(case name, token)`` pairs that a verifier for ``kind`` must all refuse.

    ``good_claims`` must be a claim set that verifies now for ``kind`` (its ``iat`` is taken as
    "now"); ``signing_key`` must be trusted by the verifier under test. Tokens not meant to be
    signed by that key are signed by freshly generated keys (reads the OS random source).
    """
    kid, typ = signing_key.kid, kind.typ
    real = _es256(signing_key.private_key)
    base: dict[str, Any] = {**good_claims, "iss": issuer, "aud": audience}
    ref = int(base["iat"])
    life = min(60, kind.max_lifetime)
    hdr: dict[str, Any] = {"alg": "ES256", "kid": kid, "typ": typ}
    good = _jws(hdr, base, real)
    cases: list[tuple[str, str]] = []

    def add(name: str, token: str) -> None:
        cases.append((name, token))

    def claims(**changes: Any) -> dict[str, Any]:
        out = {**base, **changes}
        return {k: v for k, v in out.items() if v is not _DROP}

    def header(**changes: Any) -> dict[str, Any]:
        out = {**hdr, **changes}
        return {k: v for k, v in out.items() if v is not _DROP}

    # --- alg none and algorithm confusion -------------------------------------------------
    none_h = _b64(_json(header(alg="none")))
    add("alg none, empty signature", f"{none_h}.{_b64(_json(base))}.")
    add("alg none, no signature segment", f"{none_h}.{_b64(_json(base))}")
    add("alg None, empty signature", _jws(header(alg="None"), base, _no_signature))
    add("alg none with a real signature", _jws(header(alg="none"), base, real))
    add("alg ES256, empty signature", f"{good.rsplit('.', 1)[0]}.")
    public = signing_key.public_key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    jwk = public_jwk(public, kid)
    thumb_form = {"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    hs = header(alg="HS256")
    for name, secret in [
        ("public key PEM", pem),
        ("public key PEM, CRLF", pem.replace(b"\n", b"\r\n")),
        ("public key PEM, no trailing newline", pem.rstrip(b"\n")),
        ("public key DER", der),
        ("public JWK JSON", _json(jwk)),
        ("public JWK JSON, thumbprint form", _json(thumb_form)),
        ("raw x||y", point[1:]),
        ("uncompressed point", point),
    ]:
        add(f"HS256 keyed with the {name}", _jws(hs, base, _hmac(secret)))
    add(
        "HS512 keyed with the public key PEM", _jws(header(alg="HS512"), base, _hmac(pem, "sha512"))
    )
    add("alg ES384 with an ES256 signature", _jws(header(alg="ES384"), base, real))
    add("alg RS256", _jws(header(alg="RS256"), base, real))

    # --- keys and kids -----------------------------------------------------------------------
    stranger = ec.generate_private_key(ec.SECP256R1())
    stranger_kid = jwk_thumbprint(stranger.public_key())
    add("ES256 by an unknown key", _jws(header(kid=stranger_kid), base, _es256(stranger)))
    add("ES256 by an unknown key claiming the real kid", _jws(hdr, base, _es256(stranger)))
    for name, bad_kid in [
        ("path-like", "../../etc/passwd"),
        ("empty", ""),
        ("200 chars", "k" * 200),
        ("with NUL", kid[:10] + "\x00"),
        ("a number", 7),
        ("null", None),
    ]:
        add(f"kid {name}", _jws(header(kid=bad_kid), base, real))
    add("kid missing", _jws(header(kid=_DROP), base, real))

    # --- signature ---------------------------------------------------------------------------
    h_seg, _, sig_seg = good.split(".")
    add("tampered payload", f"{h_seg}.{_b64(_json(claims(sub=base['sub'] + 'x')))}.{sig_seg}")
    add(
        "tampered header",
        f"{_b64(_json({'alg': 'ES256', 'typ': typ, 'kid': kid}))}.{good.split('.')[1]}.{sig_seg}",
    )
    other = _jws(hdr, claims(jti=str(base["jti"]) + "2"), real)
    add("signature of another token", f"{good.rsplit('.', 1)[0]}.{other.rsplit('.', 1)[1]}")
    der_sig = signing_key.private_key.sign(
        good.rsplit(".", 1)[0].encode("ascii"), ec.ECDSA(hashes.SHA256())
    )
    add("DER-encoded signature", f"{good.rsplit('.', 1)[0]}.{_b64(der_sig)}")
    add("signature truncated", good[:-1])

    # --- issuer and audience -----------------------------------------------------------------
    for name, iss in [
        ("wrong issuer", "https://attacker.example"),
        ("issuer with a suffix", issuer + ".attacker.example"),
        ("issuer with a prefix", "x" + issuer),
        ("issuer truncated (substring)", issuer[:-1]),
        ("issuer case variant", issuer.swapcase()),
        ("issuer as array", [issuer]),
        ("issuer empty", ""),
    ]:
        if iss != issuer:
            add(name, _jws(hdr, claims(iss=iss), real))
    for name, aud in [
        ("array audience with the right one", [audience]),
        ("array audience with the right one and another", [audience, "other"]),
        ("wrong audience", "https://attacker.example"),
        ("audience truncated (substring)", audience[:-1]),
        ("audience with a suffix", audience + "-other"),
        ("audience case variant", audience.swapcase()),
        ("audience empty", ""),
    ]:
        if aud != audience:
            add(name, _jws(hdr, claims(aud=aud), real))

    # --- time and lifetime -------------------------------------------------------------------
    add("expired long ago", _jws(hdr, claims(iat=ref - 3600 - life, exp=ref - 3600), real))
    add("expired beyond leeway", _jws(hdr, claims(iat=ref - 31 - life, exp=ref - 31), real))
    add("iat far in the future", _jws(hdr, claims(iat=ref + 3600, exp=ref + 3600 + life), real))
    add("iat beyond leeway", _jws(hdr, claims(iat=ref + 120, exp=ref + 120 + life), real))
    add("nbf in the future", _jws(hdr, claims(iat=ref, exp=ref + life, nbf=ref + 3600), real))
    add("exp equal to iat", _jws(hdr, claims(iat=ref, exp=ref), real))
    too_long = kind.max_lifetime + 1
    add("lifetime too long", _jws(hdr, claims(iat=ref, exp=ref + too_long), real))
    add(
        "lifetime too long, backdated iat",
        _jws(hdr, claims(iat=ref + life - too_long, exp=ref + life), real),
    )

    # --- claims ------------------------------------------------------------------------------
    for claim in ("jti", "exp", "iat", "sub", "iss", "aud"):
        add(f"missing {claim}", _jws(hdr, claims(**{claim: _DROP}), real))
    add("jti null", _jws(hdr, claims(jti=None), real))
    add("jti too long", _jws(hdr, claims(jti="j" * 129), real))
    add("exp as string", _jws(hdr, claims(exp=str(base["exp"])), real))
    add("exp as float", _jws(hdr, claims(exp=float(base["exp"]) + 0.5), real))
    add("iat as string", _jws(hdr, claims(iat=str(base["iat"])), real))
    add("iat boolean", _jws(hdr, claims(iat=True), real))
    add("sub not a string", _jws(hdr, claims(sub=12345), real))
    add("payload not JSON", _jws(hdr, b"not json", real))
    add("payload a JSON array", _jws(hdr, _json([base]), real))

    # --- typ -----------------------------------------------------------------------------------
    foreign = sorted({t for k in ALL_KINDS for t in k.accepted_typs} - kind.accepted_typs)
    for other_typ in foreign:
        add(f"typ {other_typ}", _jws(header(typ=other_typ), base, real))
    for variant in {typ.upper(), typ.lower(), f"application/{typ}"} - kind.accepted_typs:
        add(f"typ variant {variant}", _jws(header(typ=variant), base, real))
    if not kind.allow_missing_typ:
        add("typ missing", _jws(header(typ=_DROP), base, real))
    add("typ not a string", _jws(header(typ=[typ]), base, real))

    # --- header parameters and header shape ----------------------------------------------------
    attacker_jwk = public_jwk(stranger.public_key(), stranger_kid)
    add("jku header", _jws(header(jku="https://attacker.example/jwks.json"), base, real))
    add("x5u header", _jws(header(x5u="https://attacker.example/cert.pem"), base, real))
    add("x5c header", _jws(header(x5c=[_b64(der)]), base, real))
    add("x5t header", _jws(header(x5t="AAAA"), base, real))
    add("crit header", _jws(header(crit=["exp"]), base, real))
    add("b64 false header", _jws(header(b64=False, crit=["b64"]), base, real))
    add("cty header", _jws(header(cty="JWT"), base, real))
    add(
        "embedded jwk, signed by it",
        _jws(header(kid=stranger_kid, jwk=attacker_jwk), base, _es256(stranger)),
    )
    add(
        "embedded jwk, signed by it, real kid",
        _jws(header(jwk=attacker_jwk), base, _es256(stranger)),
    )
    add("embedded jwk of the real key", _jws(header(jwk=jwk), base, real))
    spaced = _json(hdr)[:-1] + b"," + b" " * 2048 + b'"typ":' + _json(typ) + b"}"
    add("oversized header (2 KB of whitespace)", _jws(spaced, base, real))
    nested: Any = kid
    for _ in range(64):
        nested = {"kid": nested}
    add("deeply nested header value", _jws(header(kid=nested), base, real))
    dup = b'{"alg":"none","alg":"ES256","kid":' + _json(kid) + b',"typ":' + _json(typ) + b"}"
    add("duplicate alg in header", _jws(dup, base, real))
    add("header not JSON", _jws(b"not json", base, real))
    add("header a JSON array", _jws(_json([hdr]), base, real))
    add("header not UTF-8", _jws(b'{"alg":"\xff\xfe"}', base, real))

    # --- size and garbage ----------------------------------------------------------------------
    add("10 KB token", _jws(hdr, claims(pad="A" * 10240), real))
    add("empty string", "")
    add("garbage", "garbage")
    add("three empty segments", "..")
    add("three junk segments", "a.b.c")
    add("four segments", good + ".AAAA")
    add("base64 padding", good.replace(".", "=."))
    add("surrounding whitespace", f" {good} ")
    add("trailing newline", good + "\n")
    add("Bearer prefix", f"Bearer {good}")
    add("non-ASCII", "\u00e4.\u00f6.\u00fc")
    return cases


class _Drop:
    """Sentinel: remove this member from the claims or header."""


_DROP: Any = _Drop()
