"""OAuth 2.0: the token endpoint (client credentials) and the server metadata (RFC 8414).

The token endpoint answers errors in the RFC 6749 §5.2 format, the one place
in the API that is not problem+json.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from identity.clients.schemas import ALL_SCOPES
from identity.deps import SessionDep, StateDep
from identity.oauth import service
from identity.oauth.schemas import TOKEN_ERRORS, TOKEN_REQUEST_BODY, TokenResponse
from shared.openapi import OWN_ERRORS, PUBLIC

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    summary="Client credentials: an access token (ES256 at+jwt, ≤ 10 min)",
    openapi_extra={"requestBody": TOKEN_REQUEST_BODY, **OWN_ERRORS},
    responses=TOKEN_ERRORS,
)
async def token(request: Request, session: SessionDep, state: StateDep) -> Response:
    """`grant_type=client_credentials` with `private_key_jwt` (RFC 7523) or, for sandbox
    clients only, HTTP Basic. The token carries `client_id`, `kind`, `scope` and, for
    hospitals, `region_code` and `level`. Errors follow RFC 6749 §5.2 (`invalid_client` is
    401 with `WWW-Authenticate`)."""
    try:
        req = service.parse_form(
            await request.body(),
            request.headers.get("content-type"),
            request.headers.get("authorization"),
        )
        answer = await service.issue_token(session, state, req)
    except service.OAuthError as exc:
        # The failed request must not keep a claimed jti: the session rolls back on raise,
        # so roll back here too before answering normally.
        await session.rollback()
        return JSONResponse(service.error_body(exc), status_code=exc.status, headers=exc.headers)
    return JSONResponse(answer.model_dump(), headers=_NO_STORE)


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata",
    openapi_extra=PUBLIC,
)
async def metadata(request: Request) -> dict[str, Any]:
    """Issuer, token endpoint, JWKS and the supported client authentication methods."""
    issuer: str = request.app.state.settings.public_issuer
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ALL_SCOPES,
        "response_types_supported": ["token"],
    }
