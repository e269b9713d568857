"""Claims models and the token-kind table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from shared.tokens.claims import (
    ACCESS,
    ALL_KINDS,
    CLIENT_ASSERTION,
    ECARD_CREDENTIAL,
    FACE_ATTESTATION,
    IDENTITY_ASSERTION,
    INTERNAL,
    AccessTokenClaims,
    ClientAssertionClaims,
    ClientKind,
    FaceAttestationClaims,
    InternalTokenClaims,
    TokenKind,
)

ClaimsFactory = Callable[..., dict[str, Any]]


def test_client_kinds() -> None:
    assert {k.value for k in ClientKind} == {
        "partner_app",
        "hospital",
        "scanner",
        "ops",
        "service",
        "face_provider",
    }


def test_token_kind_table() -> None:
    table = {
        k.name: (k.typ, k.max_lifetime, k.accepted_typs, k.allow_missing_typ) for k in ALL_KINDS
    }
    assert table == {
        "access": ("at+jwt", 600, frozenset({"at+jwt"}), False),
        "internal": ("essc-internal+jwt", 300, frozenset({"essc-internal+jwt"}), False),
        "identity_assertion": ("essc-identity+jwt", 300, frozenset({"essc-identity+jwt"}), False),
        "ecard_credential": ("essc-ecard+jwt", 604800, frozenset({"essc-ecard+jwt"}), False),
        "face_attestation": ("essc-face+jwt", 300, frozenset({"essc-face+jwt"}), False),
        "client_assertion": (
            "JWT",
            300,
            frozenset({"JWT", "client-authentication+jwt"}),
            True,
        ),
    }
    # typ sets are pairwise disjoint: no kind can pass for another on its typ.
    typs = [t for k in ALL_KINDS for t in k.accepted_typs]
    assert len(typs) == len(set(typs))


def test_token_kind_rejects_inconsistent_definitions() -> None:
    with pytest.raises(ValueError, match="accepted_typs"):
        TokenKind("x", "a", AccessTokenClaims, 60, accepted_typs=frozenset({"b"}))
    with pytest.raises(ValueError, match="max_lifetime"):
        TokenKind("x", "a", AccessTokenClaims, 0)


def test_access_claims_scopes_and_immutability(claims_for: ClaimsFactory) -> None:
    claims = AccessTokenClaims.model_validate(claims_for(ACCESS, scope=" a  b a "))
    assert claims.scopes == frozenset({"a", "b"})
    assert claims.kind is ClientKind.PARTNER_APP
    with pytest.raises(ValidationError):
        claims.sub = "other"  # type: ignore[misc]


def test_extra_claims_are_ignored(claims_for: ClaimsFactory) -> None:
    claims = InternalTokenClaims.model_validate(claims_for(INTERNAL, unknown="x"))
    assert "unknown" not in claims.model_dump()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"jti": ""}, "jti"),
        ({"jti": "j" * 129}, "jti"),
        ({"level": 0}, "level"),
        ({"level": 4}, "level"),
        ({"kind": "wizard"}, "kind"),
        ({"exp": "1900000300"}, "exp"),
        ({"exp": 1900000300.0}, "exp"),
        ({"iat": True}, "iat"),
        ({"iat": -1}, "iat"),
        ({"nbf": "0"}, "nbf"),
    ],
)
def test_access_claims_validation(
    claims_for: ClaimsFactory, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        AccessTokenClaims.model_validate(claims_for(ACCESS, **overrides))
    assert info.value.errors()[0]["loc"][0] == field


def test_jti_bounds_accept_limits(claims_for: ClaimsFactory) -> None:
    assert AccessTokenClaims.model_validate(claims_for(ACCESS, jti="j" * 128)).jti == "j" * 128
    assert AccessTokenClaims.model_validate(claims_for(ACCESS, jti="j")).jti == "j"


@pytest.mark.parametrize(
    "overrides",
    [
        {"id_number_sha256": "AB" * 32},
        {"id_number_sha256": "ab" * 31},
        {"id_number_sha256": "110101199003077777"},
        {"liveness": 1.01},
        {"match": -0.1},
        {"match": float("nan")},
    ],
)
def test_face_attestation_validation(claims_for: ClaimsFactory, overrides: dict[str, Any]) -> None:
    assert FaceAttestationClaims.model_validate(claims_for(FACE_ATTESTATION))
    with pytest.raises(ValidationError):
        FaceAttestationClaims.model_validate(claims_for(FACE_ATTESTATION, **overrides))


def test_identity_assertion_method(claims_for: ClaimsFactory) -> None:
    model = IDENTITY_ASSERTION.claims_model
    assert model.model_validate(claims_for(IDENTITY_ASSERTION, method="face")).method == "face"
    with pytest.raises(ValidationError):
        model.model_validate(claims_for(IDENTITY_ASSERTION, method="password"))


def test_ecard_sign_level(claims_for: ClaimsFactory) -> None:
    model = ECARD_CREDENTIAL.claims_model
    assert model.model_validate(claims_for(ECARD_CREDENTIAL, sign_level=2)).sign_level == 2
    with pytest.raises(ValidationError):
        model.model_validate(claims_for(ECARD_CREDENTIAL, sign_level=3))


def test_client_assertion_iss_must_equal_sub(claims_for: ClaimsFactory) -> None:
    ok = ClientAssertionClaims.model_validate(claims_for(CLIENT_ASSERTION))
    assert ok.iss == ok.sub
    with pytest.raises(ValidationError, match="iss must equal sub"):
        ClientAssertionClaims.model_validate(claims_for(CLIENT_ASSERTION, sub="another-client"))
