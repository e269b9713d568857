"""OAuth 2.0 authorization server metadata (RFC 8414)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["auth"])


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata")
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
        "scopes_supported": [
            "ecard:issue",
            "ecard:manage",
            "ecard:qr",
            "holder:enquiry",
            "scan",
            "settlement:write",
            "settlement:read",
            "reconciliation",
            "ops",
        ],
        "response_types_supported": ["token"],
    }
