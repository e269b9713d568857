"""Signed tokens of the e-SSC platform: claims, ES256 keys, signing/verification, JWKS, QR.

The package owns every token format that crosses a service boundary. Importing it has no side
effects: keys are generated or loaded only when a function is called.
"""

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
    EcardCredentialClaims,
    FaceAttestationClaims,
    IdentityAssertionClaims,
    InternalTokenClaims,
    RegisteredClaims,
    TokenKind,
)
from shared.tokens.codec import (
    AsyncKeySource,
    InvalidTokenError,
    VerifiedTokenCache,
    sign_token,
    verify_token,
    verify_token_async,
)
from shared.tokens.jwks import JwksCache
from shared.tokens.keys import (
    KeyNotFoundError,
    KeyRing,
    KeyState,
    KeyStore,
    KeyStoreError,
    ManagedKey,
    jwk_thumbprint,
    public_jwk,
)
from shared.tokens.qr import (
    ExpiredQrTokenError,
    InvalidQrTokenError,
    QrClaims,
    QrPurpose,
    issue_qr_token,
    verify_qr_signature_offline,
    verify_qr_token,
)

__all__ = [
    "ACCESS",
    "ALL_KINDS",
    "CLIENT_ASSERTION",
    "ECARD_CREDENTIAL",
    "FACE_ATTESTATION",
    "IDENTITY_ASSERTION",
    "INTERNAL",
    "AccessTokenClaims",
    "AsyncKeySource",
    "ClientAssertionClaims",
    "ClientKind",
    "EcardCredentialClaims",
    "ExpiredQrTokenError",
    "FaceAttestationClaims",
    "IdentityAssertionClaims",
    "InternalTokenClaims",
    "InvalidQrTokenError",
    "InvalidTokenError",
    "JwksCache",
    "KeyNotFoundError",
    "KeyRing",
    "KeyState",
    "KeyStore",
    "KeyStoreError",
    "ManagedKey",
    "QrClaims",
    "QrPurpose",
    "RegisteredClaims",
    "TokenKind",
    "VerifiedTokenCache",
    "issue_qr_token",
    "jwk_thumbprint",
    "public_jwk",
    "sign_token",
    "verify_qr_signature_offline",
    "verify_qr_token",
    "verify_token",
    "verify_token_async",
]
