"""Shapes of client registration (ops) and of the internal client lookups."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.tokens.claims import ClientKind
from shared.validation import RegionCode, RequestModel, ShortText

KIND_SCOPES: dict[ClientKind, frozenset[str]] = {
    ClientKind.PARTNER_APP: frozenset(
        {"ecard:issue", "ecard:manage", "ecard:qr", "holder:enquiry"}
    ),
    ClientKind.HOSPITAL: frozenset(
        {"scan", "settlement:write", "settlement:read", "reconciliation"}
    ),
    ClientKind.SCANNER: frozenset({"scan"}),
    ClientKind.OPS: frozenset({"ops"}),
    ClientKind.FACE_PROVIDER: frozenset(),
}
ALL_SCOPES = sorted(set().union(*KIND_SCOPES.values()))

RegisteredKind = Literal["partner_app", "hospital", "scanner", "ops", "face_provider"]
Scope = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z:]+$")]
# Printable ASCII only (an IDN host is written in punycode): no spaces, NUL or control characters.
Url = Annotated[str, Field(min_length=8, max_length=512, pattern=r"^https?://[\x21-\x7e]+$")]


class ClientCreate(RequestModel):
    """A client to register. Exactly one of ``jwks``, ``jwks_uri`` or ``sandbox_secret``."""

    kind: RegisteredKind
    name: ShortText
    region_code: RegionCode | None = Field(default=None, description="Required for hospitals.")
    level: Annotated[int, Field(ge=1, le=3)] | None = Field(
        default=None, description="Hospital level 1–3 (hospitals only, required)."
    )
    jwks: dict[str, Any] | None = Field(
        default=None, description="Public ES256 keys (P-256) the client signs assertions with."
    )
    jwks_uri: Url | None = Field(
        default=None, description="https URL of the client's JWKS (fetched under SSRF rules)."
    )
    sandbox_secret: Literal[True] | None = Field(
        default=None, description="Sandbox only: issue a client secret for HTTP Basic."
    )
    webhook_url: Url | None = Field(default=None, description="Partner apps: e-card events.")
    scopes: Annotated[list[Scope], Field(max_length=10)] | None = Field(
        default=None, description="Subset of the kind's scopes; default all of them."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "partner_app",
                    "name": "Bank of Lishui app",
                    "region_code": "331100",
                    "jwks": {
                        "keys": [
                            {
                                "kty": "EC",
                                "crv": "P-256",
                                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                            }
                        ]
                    },
                    "webhook_url": "https://partner.example/essc/webhooks",
                    "scopes": ["ecard:issue", "ecard:manage", "ecard:qr"],
                },
                {
                    "kind": "hospital",
                    "name": "Qingdao Municipal Hospital",
                    "region_code": "370200",
                    "level": 3,
                    "sandbox_secret": True,
                },
            ]
        }
    )


class ClientRead(BaseModel):
    """A registered client (no secrets)."""

    client_id: str = Field(examples=["app_3f9c0e6b2a7d4e18"])
    kind: RegisteredKind
    name: str
    region_code: str | None = None
    level: int | None = None
    scopes: list[str]
    status: Literal["active", "disabled"]
    created_at: datetime
    disabled_at: datetime | None = None


class ClientCreated(ClientRead):
    """The new client; ``client_secret`` and ``webhook_secret`` are shown this once only."""

    client_secret: str | None = None
    webhook_secret: str | None = None
