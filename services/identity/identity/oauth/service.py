"""The token endpoint's rules: client authentication, scope, and the ES256 access token.

Client authentication (RFC 6749 §2.3, RFC 7523): ``private_key_jwt`` with an
assertion whose ``aud`` is exactly the public issuer (one string), ``iss = sub =
client_id``, at most 5 minutes long, ``jti`` used once (kept until it expires);
or HTTP Basic, for sandbox clients only. Every failure is an :class:`OAuthError`
rendered in the RFC 6749 §5.2 format.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients import repository as clients_repo
from identity.clients import service as clients_service
from identity.clients.secrets import verify_secret
from identity.models import Client
from identity.oauth import repository as repo
from identity.oauth.schemas import ASSERTION_TYPE, TokenResponse
from identity.state import IdentityState
from shared.auth import _unverified_issuer
from shared.tokens.claims import ACCESS, CLIENT_ASSERTION, AccessTokenClaims, ClientKind
from shared.tokens.codec import MAX_LEEWAY, InvalidTokenError, sign_token, verify_token_async

API_AUDIENCE = "urn:essc:api"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACCESS_PURPOSE = "access"


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(
        self, error: str, description: str, *, status: int = 400, basic: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers: dict[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if status == 401:
            self.headers["WWW-Authenticate"] = (
                'Basic realm="e-SSC"' if basic else 'Bearer realm="e-SSC"'
            )


def _invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    return OAuthError("invalid_client", description, status=401, basic=basic)


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str | None
    scope: str | None
    assertion_type: str | None
    assertion: str | None
    client_id: str | None
    client_secret: str | None
    authorization: str | None


def parse_form(body: bytes, content_type: str | None, authorization: str | None) -> TokenRequest:
    """Parse an ``application/x-www-form-urlencoded`` body; repeated parameters are refused."""
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The body must be application/x-www-form-urlencoded.")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The body must be form-encoded ASCII.") from None
    params: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        if name in params:
            raise OAuthError("invalid_request", f"Parameter {name} is repeated.")
        if len(value) > 8192 or _CONTROL.search(value):
            raise OAuthError("invalid_request", f"Parameter {name} is malformed.")
        params[name] = value
    return TokenRequest(
        grant_type=params.get("grant_type"),
        scope=params.get("scope"),
        assertion_type=params.get("client_assertion_type"),
        assertion=params.get("client_assertion"),
        client_id=params.get("client_id"),
        client_secret=params.get("client_secret"),
        authorization=authorization,
    )


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise _invalid_client("Unsupported Authorization scheme.", basic=True)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client("Malformed Basic credentials.", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or len(client_id) > 64 or len(secret) > 256:
        raise _invalid_client("Malformed Basic credentials.", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


async def _authenticate_basic(
    session: AsyncSession, state: IdentityState, req: TokenRequest
) -> Client:
    assert req.authorization is not None
    client_id, secret = _basic_credentials(req.authorization)
    if req.client_id is not None and req.client_id != client_id:
        raise _invalid_client("client_id does not match the credentials.", basic=True)
    client = await clients_repo.get(session, client_id)
    stored = client.secret_hash if client is not None else None
    ok = await state.kdf.run(verify_secret, secret, stored, n=state.settings.secret_scrypt_n)
    if client is None or not ok:
        raise _invalid_client("Client authentication failed.", basic=True)
    if client.status != "active":
        raise _invalid_client("Client authentication failed.", basic=True)
    return client


async def _authenticate_assertion(
    session: AsyncSession, state: IdentityState, req: TokenRequest
) -> Client:
    if req.assertion_type != ASSERTION_TYPE:
        raise OAuthError("invalid_request", "client_assertion_type must be jwt-bearer.")
    assert req.assertion is not None
    client_id = _unverified_issuer(req.assertion)
    if client_id is None or len(client_id) > 64:
        raise _invalid_client("The client assertion is malformed.")
    if req.client_id is not None and req.client_id != client_id:
        raise _invalid_client("client_id does not match the assertion.")
    client = await clients_repo.get(session, client_id)
    if client is None or client.status != "active" or client.jwks is None:
        raise _invalid_client("Client authentication failed.")
    try:
        claims = await verify_token_async(
            req.assertion,
            CLIENT_ASSERTION,
            keys=clients_service.ClientKeySource(session, state, client),
            issuer=client_id,
            audience=state.settings.public_issuer,
        )
    except InvalidTokenError as exc:
        raise _invalid_client(f"The client assertion was rejected: {exc.reason}.") from None
    expires = datetime.fromtimestamp(claims.exp + MAX_LEEWAY, tz=UTC)
    if not await repo.claim_jti(session, client_id, claims.jti, expires):
        raise _invalid_client("The client assertion was already used.")
    return client


async def authenticate(session: AsyncSession, state: IdentityState, req: TokenRequest) -> Client:
    """The authenticated, active client of a token request; OAuthError otherwise."""
    if req.client_secret is not None:
        raise OAuthError("invalid_request", "client_secret_post is not supported; use Basic.")
    if req.authorization and (req.assertion or req.assertion_type):
        raise OAuthError("invalid_request", "Use one client authentication method.")
    if req.authorization:
        return await _authenticate_basic(session, state, req)
    if req.assertion:
        return await _authenticate_assertion(session, state, req)
    raise _invalid_client("Client authentication is required.")


def _granted_scope(client: Client, requested: str | None) -> list[str]:
    registered = client.scopes.split()
    if requested is None or not requested.strip():
        return registered
    wanted = list(dict.fromkeys(requested.split()))
    if not set(wanted) <= set(registered):
        raise OAuthError("invalid_scope", "A requested scope is not granted to this client.")
    return wanted


async def issue_token(
    session: AsyncSession, state: IdentityState, req: TokenRequest
) -> TokenResponse:
    """Authenticate the client and sign its access token (``at+jwt``, ≤ 600 s)."""
    if req.grant_type is None:
        raise OAuthError("invalid_request", "grant_type is required.")
    if req.grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
    client = await authenticate(session, state, req)
    kind = ClientKind(client.kind)
    if kind is ClientKind.FACE_PROVIDER:
        raise OAuthError("unauthorized_client", "Face providers do not obtain access tokens.")
    scopes = _granted_scope(client, req.scope)
    now = int(datetime.now(UTC).timestamp())
    ttl = state.settings.access_token_ttl_seconds
    claims = AccessTokenClaims(
        iss=state.settings.public_issuer,
        sub=client.client_id,
        aud=API_AUDIENCE,
        iat=now,
        exp=now + ttl,
        jti=secrets.token_urlsafe(16),
        client_id=client.client_id,
        kind=kind,
        scope=" ".join(scopes),
        region_code=client.region_code if kind is ClientKind.HOSPITAL else None,
        level=client.level if kind is ClientKind.HOSPITAL else None,
    )
    token = sign_token(ACCESS, claims, state.runtime.ring.signing_key(ACCESS_PURPOSE))
    if random.random() < 0.01:  # keep the used-jti table small without a separate job
        await repo.purge_expired(session, datetime.now(UTC) - timedelta(seconds=MAX_LEEWAY))
    return TokenResponse(access_token=token, expires_in=ttl, scope=" ".join(scopes))


def error_body(exc: OAuthError) -> dict[str, Any]:
    return {"error": exc.error, "error_description": exc.description}
