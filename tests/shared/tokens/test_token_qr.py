"""The dynamic QR token: format, size, verification, jti privacy and offline checks."""

from __future__ import annotations

import base64
import json
import struct
from datetime import datetime, timedelta

import pytest
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.tokens.keys import KeyRing, KeyState, ManagedKey
from shared.tokens.qr import (
    QR_TOKEN_LENGTH,
    ExpiredQrTokenError,
    InvalidQrTokenError,
    QrPurpose,
    issue_qr_token,
    verify_qr_signature_offline,
    verify_qr_token,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _forge(key: ManagedKey, header: bytes, payload: bytes) -> str:
    """Sign arbitrary header/payload bytes with ``key`` the way the QR format does."""
    return _sign_segments(key, _b64(header), _b64(payload))


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _noncanonical(segment: str) -> str:
    """The same bytes with a padding bit set in the last character (23 bytes → 2 spare bits)."""
    last = _ALPHABET[_ALPHABET.index(segment[-1]) ^ 1]
    changed = segment[:-1] + last
    assert changed != segment
    assert _unb64(changed) == _unb64(segment)
    return changed


def _sign_segments(key: ManagedKey, header_segment: str, payload_segment: str) -> str:
    signing_input = f"{header_segment}.{payload_segment}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _header(key: ManagedKey) -> bytes:
    return f'{{"alg":"ES256","kid":"{key.kid[:8]}","typ":"q"}}'.encode()


def _payload(
    purpose: int, iat: int, lifetime: int, jti: bytes = b"\x01" * 16, version: int = 1
) -> bytes:
    return struct.pack(">BBIB16s", version, purpose, iat, lifetime, jti)


def test_round_trip_and_exact_format(ring: KeyRing, now: int) -> None:
    key = ring.signing_key("qr")
    token, claims = issue_qr_token(
        key, purpose=QrPurpose.PAYMENT, ecard_seq=123456789, iat=now, lifetime=60, rand=b"r" * 8
    )
    header, payload, signature = token.split(".")
    assert _unb64(header) == _header(key)
    raw = _unb64(payload)
    assert len(raw) == 23
    version, purpose, iat, lifetime, jti = struct.unpack(">BBIB16s", raw)
    assert (version, purpose, iat, lifetime) == (1, 2, now, 60)
    assert len(_unb64(signature)) == 64
    assert claims.jti == _b64(jti)
    assert len(claims.jti) == 22
    assert (claims.purpose, claims.ecard_seq, claims.iat, claims.exp, claims.kid) == (
        QrPurpose.PAYMENT,
        123456789,
        now,
        now + 60,
        key.kid,
    )
    assert verify_qr_token(token, ring=ring, now=now + 30) == claims


def test_token_length_and_qr_version_bound(ring: KeyRing) -> None:
    # Length from the format: header JSON 42 bytes, payload 23 bytes, signature 64 bytes,
    # each base64url without padding, plus two dots.
    header_json = len('{"alg":"ES256","kid":"","typ":"q"}') + 8
    expected = sum((n * 4 + 2) // 3 for n in (header_json, 23, 64)) + 2
    assert (header_json, expected) == (42, 175)
    assert QR_TOKEN_LENGTH == expected
    key = ring.signing_key("qr")
    versions = set()
    for purpose, seq, iat, lifetime in [
        (QrPurpose.PAYMENT, 2**64 - 1, 2**32 - 1, 60),
        (QrPurpose.IDENTITY, 0, 0, 1),
        (QrPurpose.PAYMENT, 2**63, 1_900_000_000, 30),
    ]:
        for _ in range(5):
            token, _ = issue_qr_token(
                key, purpose=purpose, ecard_seq=seq, iat=iat, lifetime=lifetime
            )
            assert len(token) == expected
            versions.add(segno.make(token, error="m", micro=False).version)
    assert versions == {9}  # ≤ 10 required; byte mode, 175 of the 180 bytes version 9-M holds


def test_jti_is_a_keyed_permutation_of_the_ecard_seq(ring: KeyRing, now: int) -> None:
    key = ring.signing_key("qr")
    token_a, a = issue_qr_token(key, purpose=QrPurpose.IDENTITY, ecard_seq=42, iat=now)
    token_b, b = issue_qr_token(key, purpose=QrPurpose.IDENTITY, ecard_seq=42, iat=now)
    assert a.jti != b.jti  # same e-card, same second: still unlinkable
    assert verify_qr_token(token_a, ring=ring, now=now).ecard_seq == 42
    assert verify_qr_token(token_b, ring=ring, now=now).ecard_seq == 42
    # Independent decryption: HKDF-SHA256(private scalar, info) → AES-256 on one block.
    scalar = key.private_key.private_numbers().private_value.to_bytes(32, "big")
    aes_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"essc-qr-jti-v1").derive(scalar)
    plain = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor().update(_unb64(a.jti))
    assert int.from_bytes(plain[:8], "big") == 42
    # Deterministic given rand; the seq is not visible in the clear.
    _, c = issue_qr_token(key, purpose=QrPurpose.IDENTITY, ecard_seq=42, iat=now, rand=bytes(8))
    _, d = issue_qr_token(key, purpose=QrPurpose.IDENTITY, ecard_seq=42, iat=now, rand=bytes(8))
    assert c.jti == d.jti
    assert (42).to_bytes(8, "big") not in _unb64(c.jti)


def test_time_window(ring: KeyRing, now: int) -> None:
    key = ring.signing_key("qr")
    token, claims = issue_qr_token(
        key, purpose=QrPurpose.PAYMENT, ecard_seq=1, iat=now, lifetime=30
    )
    assert verify_qr_token(token, ring=ring, now=claims.exp + 5, leeway=5) == claims
    with pytest.raises(ExpiredQrTokenError) as expired:
        verify_qr_token(token, ring=ring, now=claims.exp + 6, leeway=5)
    assert expired.value.reason == "expired"
    assert verify_qr_token(token, ring=ring, now=now - 5, leeway=5) == claims
    with pytest.raises(ExpiredQrTokenError, match="not yet valid"):
        verify_qr_token(token, ring=ring, now=now - 6, leeway=5)
    with pytest.raises(ExpiredQrTokenError):
        verify_qr_token(token, ring=ring, now=claims.exp + 31, leeway=3600)  # leeway capped
    assert issubclass(ExpiredQrTokenError, InvalidQrTokenError)


def _assert_invalid(token: str, ring: KeyRing, now: int) -> None:
    with pytest.raises(InvalidQrTokenError) as info:
        verify_qr_token(token, ring=ring, now=now)
    assert type(info.value) is InvalidQrTokenError
    assert info.value.reason == "invalid"


def test_forged_and_malformed_tokens_are_invalid(ring: KeyRing, now: int, now_dt: datetime) -> None:
    key = ring.signing_key("qr")
    token, _ = issue_qr_token(key, purpose=QrPurpose.PAYMENT, ecard_seq=7, iat=now)
    header, payload, signature = token.split(".")
    raw_sig = bytearray(_unb64(signature))
    raw_sig[10] ^= 1
    raw_payload = bytearray(_unb64(payload))
    raw_payload[7] ^= 1
    stranger = ManagedKey.generate("qr", state=KeyState.CURRENT, now=now_dt)
    impostor_token, _ = issue_qr_token(stranger, purpose=QrPurpose.PAYMENT, ecard_seq=7, iat=now)
    impostor_same_prefix = _forge(stranger, _header(key), _payload(2, now, 60))
    access_key = ring.signing_key("access")
    access_signed = _forge(access_key, _header(access_key), _payload(2, now, 60))
    cases = {
        "forged signature": f"{header}.{payload}.{_b64(bytes(raw_sig))}",
        "tampered payload": f"{header}.{_b64(bytes(raw_payload))}.{signature}",
        "unknown key": impostor_token,
        "other key, real kid prefix": impostor_same_prefix,
        "key of another purpose": access_signed,
        "purpose byte 3": _forge(key, _header(key), _payload(3, now, 60)),
        "purpose byte 0": _forge(key, _header(key), _payload(0, now, 60)),
        "version 2": _forge(key, _header(key), _payload(2, now, 60, version=2)),
        "lifetime 0": _forge(key, _header(key), _payload(2, now, 0)),
        "lifetime 61": _forge(key, _header(key), _payload(2, now, 61)),
        "payload 24 bytes": _forge(key, _header(key), _payload(2, now, 60) + b"\x00"),
        "payload 22 bytes": _forge(key, _header(key), _payload(2, now, 60)[:-1]),
        "typ JWT": _forge(key, _header(key).replace(b'"q"', b'"JWT"'), _payload(2, now, 60)),
        "header with a space": _forge(
            key, _header(key).replace(b",", b", ", 1), _payload(2, now, 60)
        ),
        "alg none": f"{_b64(_header(key).replace(b'ES256', b'none'))}.{payload}.",
        "extra header member": _forge(
            key, _header(key)[:-1] + b',"jku":"x"}', _payload(2, now, 60)
        ),
        "truncated": token[:-1],
        "truncated payload": f"{header}.{payload[:-4]}.{signature}",
        "extended": token + "A",
        "non-canonical base64, signed": _sign_segments(key, header, _noncanonical(payload)),
        "zero signature": f"{header}.{payload}.{_b64(bytes(64))}",
        "empty": "",
        "garbage": "x" * QR_TOKEN_LENGTH,
        "JWT-like": f"{header}.{payload}",
    }
    for bad in cases.values():
        assert bad != token
        _assert_invalid(bad, ring, now)
    # A forged token outside its window is "invalid", not "expired": the signature comes first.
    _assert_invalid(f"{header}.{payload}.{_b64(bytes(raw_sig))}", ring, now + 3600)
    # Sanity: the helpers produce accepted tokens when nothing is wrong.
    assert verify_qr_token(_forge(key, _header(key), _payload(2, now, 60)), ring=ring, now=now)


def test_rotation_keeps_recent_qr_tokens_valid(ring: KeyRing, now: int, now_dt: datetime) -> None:
    old = ring.signing_key("qr")
    token, _ = issue_qr_token(old, purpose=QrPurpose.IDENTITY, ecard_seq=9, iat=now)
    rotated = ring.rotated("qr", now=now_dt, retain=timedelta(seconds=120))
    assert rotated.signing_key("qr").kid != old.kid
    assert verify_qr_token(token, ring=rotated, now=now + 30).ecard_seq == 9
    _assert_invalid(token, rotated, now + 120)  # old key retired: unknown, not expired
    new_token, _ = issue_qr_token(
        rotated.signing_key("qr"), purpose=QrPurpose.IDENTITY, ecard_seq=9, iat=now
    )
    assert verify_qr_token(new_token, ring=rotated, now=now).kid == rotated.signing_key("qr").kid


def test_offline_verification_with_only_the_jwks(ring: KeyRing, now: int, now_dt: datetime) -> None:
    key = ring.signing_key("qr")
    token, claims = issue_qr_token(key, purpose=QrPurpose.PAYMENT, ecard_seq=5, iat=now)
    jwks = json.loads(json.dumps(ring.jwks(["qr"])))  # what a scanner downloads
    assert all("d" not in k for k in jwks["keys"])
    assert verify_qr_signature_offline(token, jwks) is True
    assert verify_qr_signature_offline(token, jwks, now=now + 30) is True
    assert verify_qr_signature_offline(token, jwks, now=claims.exp + 6) is False
    header, payload, signature = token.split(".")
    forged_sig = bytearray(_unb64(signature))
    forged_sig[0] ^= 0x80
    assert (
        verify_qr_signature_offline(f"{header}.{payload}.{_b64(bytes(forged_sig))}", jwks) is False
    )
    stranger = ManagedKey.generate("qr", state=KeyState.CURRENT, now=now_dt)
    impostor = _forge(stranger, _header(key), _payload(2, now, 60))
    assert verify_qr_signature_offline(impostor, jwks) is False
    assert verify_qr_signature_offline(token, ring.jwks(["access"])) is False
    assert verify_qr_signature_offline(token, {"keys": "nope"}) is False
    assert verify_qr_signature_offline(token[:-2], jwks) is False
    assert verify_qr_signature_offline("garbage", jwks) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ecard_seq": -1}, "ecard_seq"),
        ({"ecard_seq": 2**64}, "ecard_seq"),
        ({"iat": -1}, "iat"),
        ({"iat": 2**32}, "iat"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": 61}, "lifetime"),
        ({"rand": b"short"}, "rand"),
        ({"purpose": 3}, "QrPurpose"),
    ],
)
def test_issue_refuses_out_of_range_values(
    ring: KeyRing, now: int, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"purpose": QrPurpose.PAYMENT, "ecard_seq": 1, "iat": now, **kwargs}
    with pytest.raises(ValueError, match=message):
        issue_qr_token(ring.signing_key("qr"), **args)  # type: ignore[arg-type]
