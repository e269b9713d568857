"""An in-process issuance service in front of fake peers on loopback (unit and contract tests).

The fake plays identity (its JWKS, holder profiles, the PIN check, the event feed, partner
client details), settlement (the account summary) and the gateway (the JWKS of internal
tokens), so that a test can drive issuance exactly as the cluster would and look at what
issuance asked of its peers. End-to-end tests use the real services instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from fastapi import FastAPI

from issuance.config import IssuanceSettings
from issuance.context import IssuanceContext
from issuance.main import create_app
from shared.fieldcrypto import mask_id_number, mask_name
from shared.migrate import upgrade
from shared.tokens.claims import (
    IDENTITY_ASSERTION,
    INTERNAL,
    ClientKind,
    IdentityAssertionClaims,
    InternalTokenClaims,
)
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyRing

ISSUER = "http://gateway.test"
PARTNER_SCOPES = "ecard:issue ecard:manage ecard:qr holder:enquiry"
HOSPITAL_SCOPES = "scan settlement:write settlement:read reconciliation"


@dataclass
class Holder:
    holder_ref: str
    name: str
    id_number: str
    card_ref: str
    card_status: str = "active"
    region: str = "370200"
    gender: str = "male"

    def profile(self) -> dict[str, Any]:
        return {
            "holder_ref": self.holder_ref,
            "name_masked": mask_name(self.name),
            "id_number_masked": mask_id_number(self.id_number),
            "gender": self.gender,
            "birth_date": date(1991, 1, 1).isoformat(),
            "insured_region": self.region,
            "insurance_type": "employee",
            "card_ref": self.card_ref,
            "card_number_masked": "A1*****78",
            "card_region": self.region,
            "card_status": self.card_status,
        }


@dataclass
class FakePeers:
    """Identity, settlement and the gateway's JWKS, as far as issuance uses them."""

    ring: KeyRing
    url: str = ""
    holders: dict[str, Holder] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def add_holder(self, name: str = "张三丰", id_number: str = "360426199101010071") -> Holder:
        ref = "h_" + secrets.token_hex(6)
        holder = Holder(ref, name, id_number, card_ref="c_" + secrets.token_hex(6))
        self.holders[ref] = holder
        return holder

    def add_event(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        event = {
            "event_id": "ev_" + secrets.token_hex(8),
            "seq": len(self.events) + 1,
            "type": event_type,
            "occurred_at": datetime.now(UTC).isoformat(),
            "payload": payload,
        }
        self.events.append(event)
        return event

    def card_event(self, holder: Holder, status: str, **extra: Any) -> dict[str, Any]:
        previous = holder.card_status
        holder.card_status = status
        payload = {
            "holder_ref": holder.holder_ref,
            "card_ref": holder.card_ref,
            "status": status,
            "previous_status": previous,
            "region_code": holder.region,
            **extra,
        }
        if status == "replaced":
            holder.card_ref = extra["new_card_ref"]
            holder.card_status = "active"
        return self.add_event("card.status_changed", payload)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.calls.append((request.method, path))
        parts = path.strip("/").split("/")
        if path in ("/.well-known/jwks.json",):
            return web.json_response(self.ring.jwks(["identity-assertion"]))
        if path == "/internal/jwks.json":
            return web.json_response(self.ring.jwks())
        if path == "/internal/v1/events":
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "100"))
            items = [e for e in self.events if e["seq"] > after][:limit]
            next_after = items[-1]["seq"] if items else after
            return web.json_response({"items": items, "next_after": next_after})
        if parts[:3] == ["internal", "v1", "holders"] and len(parts) >= 4:
            holder = self.holders.get(parts[3])
            if holder is None:
                return web.json_response({"type": "x/not-found", "status": 404}, status=404)
            if len(parts) == 4:
                return web.json_response(holder.profile())
            if parts[4] == "pin-check":
                pin = (await request.json())["pin"]
                return web.json_response({"contained": pin in holder.id_number})
            if parts[4] == "summary" and holder.holder_ref in self.summaries:
                return web.json_response(self.summaries[holder.holder_ref])
            return web.json_response({"type": "x/not-found", "status": 404}, status=404)
        if parts[:3] == ["internal", "v1", "clients"] and len(parts) == 4:
            client = self.clients.get(parts[3])
            if client is None:
                return web.json_response({"type": "x/not-found", "status": 404}, status=404)
            return web.json_response(client)
        return web.json_response({"type": "x/not-found", "status": 404}, status=404)

    # --- tokens ------------------------------------------------------------------------------

    def internal_token(
        self,
        client_id: str,
        kind: ClientKind,
        scope: str,
        *,
        iss: str = "urn:essc:gateway",
        region_code: str | None = None,
        level: int | None = None,
    ) -> str:
        now = int(time.time())
        claims = InternalTokenClaims(
            iss=iss,
            sub=client_id,
            aud="urn:essc:issuance",
            iat=now,
            exp=now + 300,
            jti=secrets.token_urlsafe(12),
            client_id=client_id,
            kind=kind,
            scope=scope,
            region_code=region_code,
            level=level,
        )
        return sign_token(INTERNAL, claims, self.ring.signing_key("internal"))

    def partner(self, client_id: str, scope: str = PARTNER_SCOPES) -> dict[str, str]:
        return {
            "Authorization": "Bearer "
            + self.internal_token(client_id, ClientKind.PARTNER_APP, scope)
        }

    def hospital(self, client_id: str = "hosp-1") -> dict[str, str]:
        token = self.internal_token(
            client_id, ClientKind.HOSPITAL, HOSPITAL_SCOPES, region_code="370200", level=3
        )
        return {"Authorization": "Bearer " + token}

    def scanner(self, client_id: str = "hall-1") -> dict[str, str]:
        return {
            "Authorization": "Bearer " + self.internal_token(client_id, ClientKind.SCANNER, "scan")
        }

    def settlement_service(self) -> dict[str, str]:
        token = self.internal_token(
            "service:settlement", ClientKind.SERVICE, "internal", iss="urn:essc:settlement"
        )
        return {"Authorization": "Bearer " + token}

    def assertion(self, holder: Holder, azp: str, *, lifetime: int = 300) -> str:
        now = int(time.time())
        claims = IdentityAssertionClaims(
            iss=ISSUER,
            sub=holder.holder_ref,
            aud="urn:essc:issuance",
            iat=now,
            exp=now + lifetime,
            jti=secrets.token_urlsafe(12),
            azp=azp,
            method="sms_otp",
        )
        return sign_token(IDENTITY_ASSERTION, claims, self.ring.signing_key("identity-assertion"))


@contextlib.asynccontextmanager
async def fake_peers() -> AsyncIterator[FakePeers]:
    ring = KeyRing.generate(["internal", "identity-assertion"], datetime.now(UTC))
    peers = FakePeers(ring)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peers.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peers.url = f"http://127.0.0.1:{port}"
    try:
        yield peers
    finally:
        await runner.cleanup()


@dataclass
class IssuanceEnv:
    app: FastAPI
    client: httpx.AsyncClient
    peers: FakePeers
    settings: IssuanceSettings

    @property
    def ctx(self) -> IssuanceContext:
        ctx: IssuanceContext = self.app.state.issuance
        return ctx

    async def issue(self, holder: Holder, client_id: str = "app-a") -> dict[str, Any]:
        resp = await self.client.post(
            "/v1/ecards",
            json={"identity_assertion": self.peers.assertion(holder, client_id)},
            headers=self.peers.partner(client_id),
        )
        assert resp.status_code in (200, 201), resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def enable_payment(
        self, ecard_id: str, client_id: str = "app-a", pin: str = "135790"
    ) -> None:
        headers = self.peers.partner(client_id)
        resp = await self.client.put(
            f"/v1/ecards/{ecard_id}/pin", json={"pin": pin}, headers=headers
        )
        assert resp.status_code == 204, resp.text
        resp = await self.client.post(
            f"/v1/ecards/{ecard_id}/payment", json={"pin": pin}, headers=headers
        )
        assert resp.status_code == 200, resp.text


def issuance_settings(
    peers: FakePeers, tmp: Path, database_url: str, **overrides: Any
) -> IssuanceSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "keys_dir": tmp / "issuance-keys",
        "public_issuer": ISSUER,
        "gateway_url": peers.url,
        "identity_url": peers.url,
        "settlement_url": peers.url,
        "jwks_min_refresh_seconds": 0,
        "background_tasks": False,
        "log_requests": False,
        "pin_scrypt_log2_n": 10,
        "webhook_backoff_base_seconds": 0.05,
        "webhook_backoff_cap_seconds": 0.2,
        "event_poll_seconds": 0.05,
        "webhook_poll_seconds": 0.05,
    }
    values.update(overrides)
    return IssuanceSettings(**values)


@contextlib.asynccontextmanager
async def issuance_env(
    tmp: Path, *, database_url: str | None = None, **overrides: Any
) -> AsyncIterator[IssuanceEnv]:
    """Fake peers + a migrated database + the real issuance app with its lifespan running."""
    url = database_url or f"sqlite+aiosqlite:///{tmp}/issuance.db"
    async with fake_peers() as peers:
        await asyncio.to_thread(upgrade, "issuance:migrations", url)
        settings = issuance_settings(peers, tmp, url, **overrides)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://issuance.test"
            ) as client:
                yield IssuanceEnv(app, client, peers, settings)
