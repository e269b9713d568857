"""Small builders for settlement tests: the app behind ASGI, hospitals, bills, holders."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from devkit.peerstub import PeerStub, StubServer
from settlement.cli import load_policies
from settlement.config import SettlementSettings
from settlement.events import consumer
from settlement.main import create_app
from settlement.policies.demo import DEMO_POLICIES
from shared.migrate import upgrade
from shared.tokens.claims import ClientKind

HOSPITAL_SCOPES = "scan settlement:write settlement:read reconciliation"


def make_settings(
    database_url: str, tmp: Path, server: StubServer, **overrides: Any
) -> SettlementSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "keys_dir": tmp / "keys",
        "environment": "test",
        "consume_events": False,
        "log_requests": False,
        "gateway_url": server.url + "/gw",
        "issuance_url": server.url + "/iss",
        "identity_url": server.url + "/idn",
    }
    values.update(overrides)
    return SettlementSettings(**values)


async def prepare_database(settings: SettlementSettings) -> None:
    """Migrate and load the demo policies for this year."""
    upgrade("settlement:migrations", settings.database_url)
    year = datetime.now(UTC).year
    entries = [(code, {**params, "year": year}) for code, params in DEMO_POLICIES.items()]
    await load_policies(settings, entries, "test")


def line(
    code: str, category: str, unit_price: str, quantity: str = "1", price_cap: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "code": code,
        "name": f"item {code}",
        "category": category,
        "quantity": quantity,
        "unit_price": unit_price,
    }
    if price_cap is not None:
        item["price_cap"] = price_cap
    return item


def new_ref(prefix: str = "h") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


class Api:
    """The settlement app in-process, the peer stub, and callers of every kind."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, stub: PeerStub) -> None:
        self.app = app
        self.client = client
        self.stub = stub

    def hospital(
        self, region: str = "310000", level: int = 3, client_id: str | None = None
    ) -> Hospital:
        return Hospital(self, client_id or new_ref("hosp"), region, level)

    def headers(
        self, client_id: str, kind: ClientKind, scope: str, **claims: Any
    ) -> dict[str, str]:
        token = self.stub.gateway_token(client_id, kind, scope, **claims)
        return {"Authorization": f"Bearer {token}"}

    def ops(self) -> dict[str, str]:
        return self.headers("ops-1", ClientKind.OPS, "ops")

    def partner(self, client_id: str = "partner-1") -> dict[str, str]:
        return self.headers(client_id, ClientKind.PARTNER_APP, "holder:enquiry")

    async def open_holder(
        self,
        holder_ref: str | None = None,
        *,
        region: str = "310000",
        balance_fen: int | None = 100_000,
        insurance_type: str = "employee",
        birth_date: date = date(1990, 1, 1),
    ) -> str:
        """A holder.upserted event through the feed, consumed once."""
        ref = holder_ref or new_ref()
        self.stub.add_ecard(ref, "partner-1", region)
        self.stub.add_event(
            "holder.upserted",
            {
                "holder_ref": ref,
                "insured_region": region,
                "insurance_type": insurance_type,
                "birth_date": birth_date.isoformat(),
                "gender": "female",
                "opening_balance_fen": balance_fen,
            },
        )
        await self.consume()
        return ref

    async def consume(self) -> None:
        while await consumer.poll_once(self.app.state.runtime, 500) >= 500:
            pass

    async def ledger_check(self) -> dict[str, Any]:
        resp = await self.client.get("/v1/admin/ledger/check", headers=self.ops())
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def balance(self, holder_ref: str, partner: str = "partner-1") -> dict[str, Any]:
        ecard = f"ec_{holder_ref}_{partner}"
        resp = await self.client.get(f"/v1/ecards/{ecard}/account", headers=self.partner(partner))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


class Hospital:
    def __init__(self, api: Api, client_id: str, region: str, level: int) -> None:
        self.api = api
        self.client_id = client_id
        self.region = region
        self.level = level

    def headers(self, scope: str = HOSPITAL_SCOPES) -> dict[str, str]:
        return self.api.headers(
            self.client_id, ClientKind.HOSPITAL, scope, region_code=self.region, level=self.level
        )

    def token(self, holder_ref: str, insured_region: str = "310000", **kwargs: Any) -> str:
        return self.api.stub.issue_token(
            holder_ref=holder_ref,
            hospital_client_id=self.client_id,
            insured_region=insured_region,
            **kwargs,
        )

    async def quote(
        self,
        holder_ref: str,
        items: list[dict[str, Any]],
        *,
        visit: str = "inpatient",
        insured_region: str = "310000",
        token: str | None = None,
        **token_kwargs: Any,
    ) -> httpx.Response:
        body = {
            "settlement_token": token or self.token(holder_ref, insured_region, **token_kwargs),
            "visit": {"type": visit},
            "items": items,
        }
        return await self.api.client.post(
            "/v1/settlements/quotes", json=body, headers=self.headers()
        )

    async def settle(self, quote_id: str, key: str | None = None) -> httpx.Response:
        headers = self.headers()
        headers["Idempotency-Key"] = key or secrets.token_hex(8)
        return await self.api.client.post(
            "/v1/settlements", json={"quote_id": quote_id}, headers=headers
        )

    async def refund(self, settlement_id: str, key: str | None = None) -> httpx.Response:
        headers = self.headers()
        headers["Idempotency-Key"] = key or secrets.token_hex(8)
        return await self.api.client.post(
            f"/v1/settlements/{settlement_id}/refunds",
            json={"reason": "patient cancelled"},
            headers=headers,
        )

    async def quote_and_settle(
        self, holder_ref: str, items: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        q = await self.quote(holder_ref, items, **kwargs)
        assert q.status_code == 201, q.text
        s = await self.settle(q.json()["quote_id"])
        assert s.status_code == 201, s.text
        body: dict[str, Any] = s.json()
        return body


@contextlib.asynccontextmanager
async def running(settings: SettlementSettings, stub: PeerStub) -> AsyncIterator[Api]:
    """The app with its lifespan running, behind an ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://settlement") as client:
            yield Api(app, client, stub)
