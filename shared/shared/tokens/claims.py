"""Claim sets of every signed token kind on the platform, and the token kinds themselves.

This module owns the wire shape of each token's payload (one pydantic model per kind) and
the `TokenKind` table that binds a kind to its JOSE ``typ``, its claims model and its longest
allowed lifetime. One ``typ`` per kind (RFC 8725 §3.11) is what stops a token of one kind being
accepted in place of another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ACCESS",
    "ALL_KINDS",
    "CLIENT_ASSERTION",
    "ECARD_CREDENTIAL",
    "FACE_ATTESTATION",
    "IDENTITY_ASSERTION",
    "INTERNAL",
    "AccessTokenClaims",
    "ClientAssertionClaims",
    "ClientKind",
    "EcardCredentialClaims",
    "FaceAttestationClaims",
    "IdentityAssertionClaims",
    "InternalTokenClaims",
    "RegisteredClaims",
    "TokenKind",
]

# NumericDate bounds: strict ints (no bools, floats or numeric strings) within a sane range,
# so that a claim like "exp": 1e300 or "exp": "123" is refused rather than coerced.
_MAX_NUMERIC_DATE = 2**40
NumericDate = Annotated[int, Field(strict=True, ge=0, le=_MAX_NUMERIC_DATE)]
_ShortStr = Annotated[str, Field(min_length=1, max_length=256)]


class ClientKind(StrEnum):
    """The kind of registered client a token was issued to."""

    PARTNER_APP = "partner_app"
    HOSPITAL = "hospital"
    SCANNER = "scanner"
    OPS = "ops"
    SERVICE = "service"
    FACE_PROVIDER = "face_provider"


class RegisteredClaims(BaseModel):
    """RFC 7519 registered claims required on every platform token."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    iss: _ShortStr
    sub: _ShortStr
    aud: _ShortStr
    exp: NumericDate
    iat: NumericDate
    jti: Annotated[str, Field(min_length=1, max_length=128)]
    nbf: NumericDate | None = None


class AccessTokenClaims(RegisteredClaims):
    """OAuth2 access token (RFC 9068 profile) issued to a registered client."""

    client_id: _ShortStr
    kind: ClientKind
    scope: Annotated[str, Field(max_length=2048)]
    region_code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    level: Annotated[int, Field(strict=True, ge=1, le=3)] | None = None

    @property
    def scopes(self) -> frozenset[str]:
        """The space-separated ``scope`` claim as a set (empty scope → empty set)."""
        return frozenset(self.scope.split())


class InternalTokenClaims(AccessTokenClaims):
    """Gateway-to-service token: the caller's verified identity re-signed for one backend.

    Services also use it for service-to-service calls with ``kind=service`` and
    ``sub="service:<name>"``.
    """


class IdentityAssertionClaims(RegisteredClaims):
    """Proof that a holder authenticated; ``sub`` is an opaque holder reference, never an ID."""

    azp: _ShortStr
    method: Literal["sms_otp", "face"]


class EcardCredentialClaims(RegisteredClaims):
    """E-card credential handed to a partner app; ``sub`` is the pairwise holder id."""

    ecard_id: _ShortStr
    sign_no: _ShortStr
    sign_level: Annotated[int, Field(strict=True, ge=1, le=2)]
    region_code: Annotated[str, Field(min_length=1, max_length=32)]


class FaceAttestationClaims(RegisteredClaims):
    """A face provider's liveness/match result; ``iss`` is the provider's client id."""

    id_number_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    liveness: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    match: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class ClientAssertionClaims(RegisteredClaims):
    """RFC 7523 ``private_key_jwt`` client assertion: ``iss`` and ``sub`` are the client id."""

    @model_validator(mode="after")
    def _iss_is_sub(self) -> ClientAssertionClaims:
        if self.iss != self.sub:
            raise ValueError("client assertion iss must equal sub")
        return self


C = TypeVar("C", bound=RegisteredClaims)


@dataclass(frozen=True)
class TokenKind(Generic[C]):
    """One kind of signed token: its JOSE ``typ``, claims model and longest lifetime.

    ``accepted_typs`` defaults to ``{typ}``; comparison is exact (case-sensitive).
    ``allow_missing_typ`` lets a verifier accept a header without ``typ`` (only client
    assertions, which third-party libraries often emit without one).
    """

    name: str
    typ: str
    claims_model: type[C]
    max_lifetime: int
    accepted_typs: frozenset[str] = field(default=frozenset())
    allow_missing_typ: bool = False

    def __post_init__(self) -> None:
        if not self.accepted_typs:
            object.__setattr__(self, "accepted_typs", frozenset({self.typ}))
        if self.typ not in self.accepted_typs:
            raise ValueError(f"token kind {self.name}: typ must be one of accepted_typs")
        if self.max_lifetime <= 0:
            raise ValueError(f"token kind {self.name}: max_lifetime must be positive")


ACCESS: TokenKind[AccessTokenClaims] = TokenKind(
    name="access", typ="at+jwt", claims_model=AccessTokenClaims, max_lifetime=600
)
INTERNAL: TokenKind[InternalTokenClaims] = TokenKind(
    name="internal", typ="essc-internal+jwt", claims_model=InternalTokenClaims, max_lifetime=300
)
IDENTITY_ASSERTION: TokenKind[IdentityAssertionClaims] = TokenKind(
    name="identity_assertion",
    typ="essc-identity+jwt",
    claims_model=IdentityAssertionClaims,
    max_lifetime=300,
)
ECARD_CREDENTIAL: TokenKind[EcardCredentialClaims] = TokenKind(
    name="ecard_credential",
    typ="essc-ecard+jwt",
    claims_model=EcardCredentialClaims,
    max_lifetime=7 * 24 * 3600,
)
FACE_ATTESTATION: TokenKind[FaceAttestationClaims] = TokenKind(
    name="face_attestation",
    typ="essc-face+jwt",
    claims_model=FaceAttestationClaims,
    max_lifetime=300,
)
CLIENT_ASSERTION: TokenKind[ClientAssertionClaims] = TokenKind(
    name="client_assertion",
    typ="JWT",
    claims_model=ClientAssertionClaims,
    max_lifetime=300,
    accepted_typs=frozenset({"JWT", "client-authentication+jwt"}),
    allow_missing_typ=True,
)

ALL_KINDS: tuple[TokenKind[Any], ...] = (
    ACCESS,
    INTERNAL,
    IDENTITY_ASSERTION,
    ECARD_CREDENTIAL,
    FACE_ATTESTATION,
    CLIENT_ASSERTION,
)
