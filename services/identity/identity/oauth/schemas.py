"""Shapes of the OAuth 2.0 token endpoint (RFC 6749 §5.1 and §5.2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class TokenResponse(BaseModel):
    access_token: str = Field(
        examples=["eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9..."]
    )
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(examples=[600])
    scope: str = Field(examples=["ecard:issue ecard:manage ecard:qr"])


class OAuthErrorBody(BaseModel):
    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = None


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

TOKEN_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["grant_type"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                    "scope": {
                        "type": "string",
                        "description": "Space-separated; a subset of the client's scopes "
                        "(default: all of them).",
                    },
                    "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                    "client_assertion": {
                        "type": "string",
                        "description": "private_key_jwt (RFC 7523): ES256, iss = sub = "
                        "client_id, aud = the issuer (one string), exp ≤ 5 min after iat, a "
                        "unique jti.",
                    },
                    "client_id": {"type": "string"},
                },
            },
            "examples": {
                "private_key_jwt": {
                    "value": {
                        "grant_type": "client_credentials",
                        "scope": "ecard:issue",
                        "client_assertion_type": ASSERTION_TYPE,
                        "client_assertion": "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9...",
                    }
                },
                "client_secret_basic (sandbox; send Authorization: Basic ...)": {
                    "value": {"grant_type": "client_credentials"}
                },
            },
        }
    },
}


def _oauth_error(description: str, error: str, status: int) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": OAuthErrorBody.model_json_schema(),
                "example": {"error": error, "error_description": description},
            }
        },
    }


TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _oauth_error(
        "invalid_request, unsupported_grant_type, invalid_scope or unauthorized_client.",
        "invalid_scope",
        400,
    ),
    401: _oauth_error(
        "invalid_client: unknown, disabled or badly authenticated client.", "invalid_client", 401
    ),
    429: _oauth_error("Too many requests; see Retry-After.", "invalid_request", 429),
}
