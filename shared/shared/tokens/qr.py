"""The dynamic QR token: a compact ES256 JWS short enough for a version ≤ 10 QR code.

This module owns the QR wire format. Token = ``B64(header) "." B64(payload) "." B64(r||s)``:

* header, fixed per key: ``{"alg":"ES256","kid":"<first 8 chars of the kid>","typ":"q"}``;
* payload, 23 bytes: ``version=1 (u8) | purpose (u8) | iat (u32 BE) | lifetime s (u8, 1..60) |
  jti (16 bytes)``;
* ``jti = AES-256(k, ecard_seq u64 BE || 8 random bytes)`` on one block, with
  ``k = HKDF-SHA256(private scalar, info="essc-qr-jti-v1")``: only the holder of the signing key
  can map a jti back to an e-card, while an offline verifier holding only the JWKS can check
  the signature and learns nothing about the holder.

Every token is exactly ``QR_TOKEN_LENGTH`` (175) characters: byte-mode QR version 9 at level M.
ECDSA signatures are malleable, so one-time redemption must key on ``jti``, never the string.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.tokens.jwks import ec_public_key_from_jwk
from shared.tokens.keys import KID_PREFIX_LEN, KeyRing, ManagedKey

__all__ = [
    "QR_KEY_PURPOSE",
    "QR_TOKEN_LENGTH",
    "ExpiredQrTokenError",
    "InvalidQrTokenError",
    "QrClaims",
    "QrPurpose",
    "issue_qr_token",
    "verify_qr_signature_offline",
    "verify_qr_token",
]

QR_KEY_PURPOSE = "qr"
QR_VERSION = 1
MAX_QR_LIFETIME = 60
MAX_QR_LEEWAY = 30
_PAYLOAD = struct.Struct(">BBIB16s")  # 23 bytes
_HKDF_INFO = b"essc-qr-jti-v1"
_HEADER_RE = re.compile(r'\{"alg":"ES256","kid":"([A-Za-z0-9_-]{8})","typ":"q"\}')
_ECDSA = ec.ECDSA(hashes.SHA256())
_HEADER_CHARS = 56  # 42-byte header
_PAYLOAD_CHARS = 31  # 23-byte payload
_SIGNATURE_CHARS = 86  # 64-byte r||s
QR_TOKEN_LENGTH = _HEADER_CHARS + 1 + _PAYLOAD_CHARS + 1 + _SIGNATURE_CHARS


class QrPurpose(IntEnum):
    """What a QR token authorises."""

    IDENTITY = 1
    PAYMENT = 2


class InvalidQrTokenError(Exception):
    """A QR token is malformed, forged or signed by an unknown key (``reason`` is client-safe)."""

    def __init__(self, reason: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason


class ExpiredQrTokenError(InvalidQrTokenError):
    """A genuine QR token outside its validity window (expired, or issued in the future)."""


@dataclass(frozen=True, slots=True)
class QrClaims:
    """What a verified QR token says; ``jti`` is the base64url (22 chars) of the 16 jti bytes."""

    purpose: QrPurpose
    ecard_seq: int
    jti: str
    iat: int
    exp: int
    kid: str


@dataclass(frozen=True, slots=True)
class _KeyMaterial:
    header_segment: bytes
    jti_cipher: Cipher[modes.ECB]


# Per-kid cache of the HKDF output and encoded header. The kid is the key's thumbprint and
# ManagedKey enforces that, so a kid cannot name two different private keys.
_MATERIAL: dict[str, _KeyMaterial] = {}
_MATERIAL_MAX = 64


def _b64e(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64d_canonical(segment: str) -> bytes:
    """Decode base64url without padding, refusing non-canonical encodings (malleability)."""
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64e(data).decode("ascii") != segment:
        raise ValueError("non-canonical base64url")
    return data


def _material(key: ManagedKey) -> _KeyMaterial:
    material = _MATERIAL.get(key.kid)
    if material is None:
        scalar = key.private_key.private_numbers().private_value.to_bytes(32, "big")
        aes_key = HKDF(hashes.SHA256(), 32, salt=None, info=_HKDF_INFO).derive(scalar)
        header = f'{{"alg":"ES256","kid":"{key.kid[:KID_PREFIX_LEN]}","typ":"q"}}'
        # ECB over exactly one block is the bare AES permutation the format specifies. ECB's
        # known weakness (equal blocks → equal ciphertexts) needs several blocks; the random
        # half of the block makes every jti distinct even for the same e-card.
        cipher = Cipher(algorithms.AES(aes_key), modes.ECB())
        material = _KeyMaterial(_b64e(header.encode("ascii")), cipher)
        if len(_MATERIAL) >= _MATERIAL_MAX:
            _MATERIAL.clear()
        _MATERIAL[key.kid] = material
    return material


def issue_qr_token(
    key: ManagedKey,
    *,
    purpose: QrPurpose,
    ecard_seq: int,
    iat: int,
    lifetime: int = MAX_QR_LIFETIME,
    rand: bytes | None = None,
) -> tuple[str, QrClaims]:
    """Sign a QR token for e-card ``ecard_seq`` and return it with its claims.

    ``rand`` (8 bytes) defaults to ``os.urandom(8)``; pass it only in tests. Raises ValueError
    for an out-of-range purpose, ecard_seq (u64), iat (u32), lifetime (1..60) or rand.
    Side effect: caches the key's derived AES key and header in this module.
    """
    purpose = QrPurpose(purpose)
    if not 0 <= ecard_seq < 2**64:
        raise ValueError("ecard_seq must fit in 64 bits")
    if not 0 <= iat < 2**32:
        raise ValueError("iat must fit in 32 bits")
    if not 1 <= lifetime <= MAX_QR_LIFETIME:
        raise ValueError(f"lifetime must be 1..{MAX_QR_LIFETIME} s")
    if rand is None:
        rand = os.urandom(8)
    elif len(rand) != 8:
        raise ValueError("rand must be 8 bytes")
    material = _material(key)
    jti = material.jti_cipher.encryptor().update(ecard_seq.to_bytes(8, "big") + rand)
    payload = _PAYLOAD.pack(QR_VERSION, purpose, iat, lifetime, jti)
    signing_input = material.header_segment + b"." + _b64e(payload)
    r, s = decode_dss_signature(key.private_key.sign(signing_input, _ECDSA))
    signature = _b64e(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    token = (signing_input + b"." + signature).decode("ascii")
    claims = QrClaims(
        purpose=purpose,
        ecard_seq=ecard_seq,
        jti=_b64e(jti).decode("ascii"),
        iat=iat,
        exp=iat + lifetime,
        kid=key.kid,
    )
    return token, claims


@dataclass(frozen=True, slots=True)
class _Parsed:
    kid_prefix: str
    signing_input: bytes
    payload: bytes
    der_signature: bytes


def _parse(token: object) -> _Parsed:
    """Check the exact shape of a QR token; raises ValueError on any deviation."""
    if not isinstance(token, str) or len(token) != QR_TOKEN_LENGTH:
        raise ValueError("length")
    parts = token.split(".")
    if len(parts) != 3 or [len(p) for p in parts] != [
        _HEADER_CHARS,
        _PAYLOAD_CHARS,
        _SIGNATURE_CHARS,
    ]:
        raise ValueError("segments")
    header = _b64d_canonical(parts[0])
    match = _HEADER_RE.fullmatch(header.decode("ascii"))
    if match is None:
        raise ValueError("header")
    payload = _b64d_canonical(parts[1])
    raw_sig = _b64d_canonical(parts[2])
    r, s = int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    if r == 0 or s == 0:
        raise ValueError("signature")
    return _Parsed(
        kid_prefix=match.group(1),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        payload=payload,
        der_signature=encode_dss_signature(r, s),
    )


def _check_fields(payload: bytes) -> tuple[QrPurpose, int, int, bytes]:
    """Return (purpose, iat, lifetime, jti) of a structurally valid payload, else ValueError."""
    version, purpose, iat, lifetime, jti = _PAYLOAD.unpack(payload)
    if version != QR_VERSION or not 1 <= lifetime <= MAX_QR_LIFETIME:
        raise ValueError("payload")
    return QrPurpose(purpose), iat, lifetime, jti


def _check_time(iat: int, exp: int, now: int, leeway: int) -> None:
    slack = max(0, min(leeway, MAX_QR_LEEWAY))
    if now > exp + slack:
        raise ExpiredQrTokenError("expired")
    if iat > now + slack:
        raise ExpiredQrTokenError("not yet valid")


def verify_qr_token(
    token: str, *, ring: KeyRing, purpose_filter: str = QR_KEY_PURPOSE, now: int, leeway: int = 5
) -> QrClaims:
    """Verify a QR token with the issuing ring (private keys needed to recover ``ecard_seq``).

    Raises InvalidQrTokenError("invalid") for anything malformed, forged or signed by a key
    not in ``ring`` under ``purpose_filter`` (retired keys excluded at ``now``), and
    ExpiredQrTokenError when ``now > exp + leeway`` or ``iat > now + leeway`` (leeway ≤ 30 s).
    The signature is checked before the time window. No side effects except the key cache.
    Does not check single use: redeem ``jti`` atomically where the effect happens.
    """
    try:
        parsed = _parse(token)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidQrTokenError() from None
    key = ring.key_by_kid_prefix(purpose_filter, parsed.kid_prefix, now=now)
    if key is None:
        raise InvalidQrTokenError()
    try:
        key.public_key.verify(parsed.der_signature, parsed.signing_input, _ECDSA)
        purpose, iat, lifetime, jti = _check_fields(parsed.payload)
    except (InvalidSignature, ValueError):
        raise InvalidQrTokenError() from None
    exp = iat + lifetime
    _check_time(iat, exp, now, leeway)
    plain = _material(key).jti_cipher.decryptor().update(jti)
    return QrClaims(
        purpose=purpose,
        ecard_seq=int.from_bytes(plain[:8], "big"),
        jti=_b64e(jti).decode("ascii"),
        iat=iat,
        exp=exp,
        kid=key.kid,
    )


def verify_qr_signature_offline(
    token: str, jwks: Mapping[str, object], *, now: int | None = None, leeway: int = 5
) -> bool:
    """Check a QR token with public keys only, as an offline scanner would.

    True if the token has the exact QR shape, a JWK in ``jwks["keys"]`` whose kid starts with
    the token's kid prefix verifies its signature, the payload is well formed and, when ``now``
    is given, the token is within its validity window. Never raises; no side effects.
    """
    try:
        parsed = _parse(token)
        _, iat, lifetime, _ = _check_fields(parsed.payload)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return False
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return False
    for jwk in keys:
        found = ec_public_key_from_jwk(jwk)
        if found is None or found[0][:KID_PREFIX_LEN] != parsed.kid_prefix:
            continue
        try:
            found[1].verify(parsed.der_signature, parsed.signing_input, _ECDSA)
        except InvalidSignature:
            continue
        if now is not None:
            try:
                _check_time(iat, iat + lifetime, now, leeway)
            except ExpiredQrTokenError:
                return False
        return True
    return False
