"""Fixtures for the token library tests: a fixed clock, a generated key ring, claim factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.tokens.claims import (
    ACCESS,
    CLIENT_ASSERTION,
    ECARD_CREDENTIAL,
    FACE_ATTESTATION,
    IDENTITY_ASSERTION,
    INTERNAL,
    TokenKind,
)
from shared.tokens.keys import KeyRing, ManagedKey

NOW = 1_900_000_000
NOW_DT = datetime.fromtimestamp(NOW, UTC)
ISSUER = "https://auth.essc.test"

# Which ring purpose signs each kind, and the audience each kind is verified for.
PURPOSE: dict[str, str] = {
    ACCESS.name: "access",
    INTERNAL.name: "internal",
    IDENTITY_ASSERTION.name: "identity",
    ECARD_CREDENTIAL.name: "ecard",
    FACE_ATTESTATION.name: "face",
    CLIENT_ASSERTION.name: "client",
}
AUDIENCE: dict[str, str] = {
    ACCESS.name: "https://gateway.essc.test",
    INTERNAL.name: "settlement",
    IDENTITY_ASSERTION.name: "https://auth.essc.test/identity",
    ECARD_CREDENTIAL.name: "partner-app-1",
    FACE_ATTESTATION.name: "https://auth.essc.test/face",
    CLIENT_ASSERTION.name: "https://auth.essc.test/token",
}

ClaimsFactory = Callable[..., dict[str, Any]]


def _extra(kind: TokenKind[Any]) -> dict[str, Any]:
    if kind.name in (ACCESS.name, INTERNAL.name):
        return {
            "client_id": "partner-app-1",
            "kind": "partner_app",
            "scope": "ecard:read qr:issue",
            "region_code": "110000",
            "level": 2,
        }
    if kind.name == IDENTITY_ASSERTION.name:
        return {"azp": "partner-app-1", "method": "sms_otp"}
    if kind.name == ECARD_CREDENTIAL.name:
        return {"ecard_id": "ec-1", "sign_no": "S1", "sign_level": 1, "region_code": "110000"}
    if kind.name == FACE_ATTESTATION.name:
        return {"id_number_sha256": "ab" * 32, "liveness": 0.99, "match": 0.97}
    return {}


def make_claims(kind: TokenKind[Any], /, *, iat: int = NOW, **overrides: Any) -> dict[str, Any]:
    """A claim dict that verifies for ``kind`` at ``iat`` with ``ISSUER``/``AUDIENCE``."""
    sub = "partner-app-1" if kind.name == CLIENT_ASSERTION.name else "holder-ref-1"
    claims: dict[str, Any] = {
        "iss": "partner-app-1" if kind.name == CLIENT_ASSERTION.name else ISSUER,
        "sub": sub,
        "aud": AUDIENCE[kind.name],
        "iat": iat,
        "exp": iat + min(kind.max_lifetime, 300),
        "jti": uuid.uuid4().hex,
        **_extra(kind),
    }
    claims.update(overrides)
    return claims


def _issuer_for(kind: TokenKind[Any]) -> str:
    return "partner-app-1" if kind.name == CLIENT_ASSERTION.name else ISSUER


@pytest.fixture(scope="session")
def now() -> int:
    """The fixed clock (unix seconds) every test verifies at."""
    return NOW


@pytest.fixture(scope="session")
def now_dt() -> datetime:
    return NOW_DT


@pytest.fixture(scope="session")
def ring() -> KeyRing:
    """One current and one next key per purpose (every token kind, plus "qr")."""
    return KeyRing.generate([*PURPOSE.values(), "qr"], NOW_DT, clock=lambda: float(NOW))


@pytest.fixture(scope="session")
def claims_for() -> ClaimsFactory:
    """``claims_for(kind, iat=NOW, **overrides)``: a claim dict valid for the kind."""
    return make_claims


@pytest.fixture(scope="session")
def issuer_for() -> Callable[[TokenKind[Any]], str]:
    return _issuer_for


@pytest.fixture(scope="session")
def audience_for() -> Callable[[TokenKind[Any]], str]:
    return lambda kind: AUDIENCE[kind.name]


@pytest.fixture(scope="session")
def signer_for(ring: KeyRing) -> Callable[[TokenKind[Any]], ManagedKey]:
    """The ring's current key for the purpose that signs ``kind``."""
    return lambda kind: ring.signing_key(PURPOSE[kind.name])
