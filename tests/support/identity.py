"""Test harness of the identity service: a migrated database, the app with its lifespan,
internal tokens signed as the gateway would sign them, and small factories."""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from identity.config import IdentitySettings
from identity.loader.synth import holders
from identity.state import IdentityState
from shared.auth import GATEWAY_ISSUER, RingKeySource
from shared.tokens.claims import (
    CLIENT_ASSERTION,
    FACE_ATTESTATION,
    INTERNAL,
    ClientAssertionClaims,
    ClientKind,
    FaceAttestationClaims,
    InternalTokenClaims,
)
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyRing, KeyState, ManagedKey, public_jwk

ISSUER = "http://issuer.test"


def settings_for(url: str, keys_dir: Path, **overrides: Any) -> IdentitySettings:
    values: dict[str, Any] = {
        "database_url": url,
        "keys_dir": keys_dir,
        "environment": "test",
        "public_issuer": ISSUER,
        "allow_insecure_jwks_uri": True,
        "secret_scrypt_n": 2**10,
        "log_requests": False,
    }
    values.update(overrides)
    return IdentitySettings(**values)


def gateway_ring() -> KeyRing:
    return KeyRing.generate(["internal"], datetime.now(UTC))


def internal_token(
    ring: KeyRing,
    *,
    client_id: str,
    kind: ClientKind,
    scope: str,
    iss: str = GATEWAY_ISSUER,
    aud: str = "urn:essc:identity",
    region_code: str | None = None,
    level: int | None = None,
) -> str:
    now = int(time.time())
    claims = InternalTokenClaims(
        iss=iss,
        sub=client_id,
        aud=aud,
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(12),
        client_id=client_id,
        kind=kind,
        scope=scope,
        region_code=region_code,
        level=level,
    )
    return sign_token(INTERNAL, claims, ring.signing_key("internal"))


@dataclass
class ClientKey:
    """A client's own ES256 key pair (what a partner or face provider holds)."""

    key: ManagedKey

    @classmethod
    def new(cls) -> ClientKey:
        return cls(ManagedKey.generate("client", state=KeyState.CURRENT, now=datetime.now(UTC)))

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key.public_key, self.key.kid)]}

    def assertion(
        self,
        client_id: str,
        *,
        aud: Any = ISSUER,
        lifetime: int = 60,
        iat: int | None = None,
        jti: str | None = None,
    ) -> str:
        now = int(time.time()) if iat is None else iat
        if isinstance(aud, str) and lifetime <= 300:
            claims = ClientAssertionClaims(
                iss=client_id,
                sub=client_id,
                aud=aud,
                iat=now,
                exp=now + lifetime,
                jti=jti or secrets.token_urlsafe(12),
            )
            return sign_token(CLIENT_ASSERTION, claims, self.key)
        # Shapes sign_token refuses (array audience, over-long lifetime): sign by hand.
        import jwt

        payload = {
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or secrets.token_urlsafe(12),
        }
        return jwt.encode(
            payload, self.key.private_key, algorithm="ES256", headers={"kid": self.key.kid}
        )

    def face(
        self,
        provider_id: str,
        id_number: str,
        *,
        liveness: float = 0.99,
        match: float = 0.97,
        aud: str = ISSUER,
        lifetime: int = 120,
        iat: int | None = None,
    ) -> str:
        import hashlib

        now = int(time.time()) if iat is None else iat
        claims = FaceAttestationClaims(
            iss=provider_id,
            sub="face-session-" + secrets.token_hex(4),
            aud=aud,
            iat=now,
            exp=now + lifetime,
            jti=secrets.token_urlsafe(12),
            id_number_sha256=hashlib.sha256(id_number.encode()).hexdigest(),
            liveness=liveness,
            match=match,
        )
        return sign_token(FACE_ATTESTATION, claims, self.key)


@dataclass
class Harness:
    """The running app and a client; tokens as the gateway would mint them."""

    app: FastAPI
    http: httpx.AsyncClient
    ring: KeyRing
    settings: IdentitySettings

    @property
    def state(self) -> IdentityState:
        state: IdentityState = self.app.state.identity
        return state

    def auth(self, client_id: str, kind: ClientKind, scope: str, **kw: Any) -> dict[str, str]:
        token = internal_token(self.ring, client_id=client_id, kind=kind, scope=scope, **kw)
        return {"Authorization": f"Bearer {token}"}

    def ops(self) -> dict[str, str]:
        return self.auth("ops_test", ClientKind.OPS, "ops")

    def partner(self, client_id: str = "app_test") -> dict[str, str]:
        return self.auth(
            client_id, ClientKind.PARTNER_APP, "ecard:issue ecard:manage ecard:qr holder:enquiry"
        )

    def service(self, name: str) -> dict[str, str]:
        return self.auth(f"service:{name}", ClientKind.SERVICE, "internal")

    async def register(self, **body: Any) -> dict[str, Any]:
        resp = await self.http.post("/v1/admin/clients", json=body, headers=self.ops())
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def import_rows(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        resp = await self.http.post("/v1/admin/holders", json={"holders": rows}, headers=self.ops())
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data


def install_gateway_ring(app: FastAPI, ring: KeyRing) -> None:
    """Make the app trust ``ring`` as the gateway's internal keys (no gateway process)."""
    app.state.internal_verifier.issuers[GATEWAY_ISSUER] = RingKeySource(lambda: ring)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def fresh_rows(count: int) -> list[dict[str, Any]]:
    """Synthetic import rows unique to this call (a random seed)."""
    return list(holders(count, seed=random.randrange(2**62)))
