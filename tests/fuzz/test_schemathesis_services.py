"""Schemathesis against each service's own OpenAPI document, in process, on PostgreSQL.

Each service runs as its real app with its lifespan, on a fresh migrated PostgreSQL
database, behind schemathesis' ASGI transport. Peers are the test doubles the service's
own tests use (``devkit.peerstub`` for identity's and settlement's token keys, the fake
peers of ``support.issuance_env`` for issuance). Requests carry internal tokens minted as
the gateway (or, on ``/internal/...`` routes, the calling service) would mint them, for the
client kind that may call each operation; data is seeded first (holders, clients,
e-cards, opened accounts, policies) and real ids join the generated ones, so operations
reach their code paths and not only their 401/404.

Budget and seed: ``support.fuzz`` (``ESSC_FUZZ_*``; ``make fuzz`` runs more).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.python.asgi import _get_portal

from devkit.cluster import free_port
from devkit.peerstub import PeerStub, StubServer
from identity.cli import MIGRATIONS
from identity.loader.synth import holders
from identity.main import create_app as create_identity
from shared.migrate import upgrade
from shared.tokens.claims import ClientKind
from support import fuzz
from support.identity import settings_for
from support.issuance_env import HOSPITAL_SCOPES, PARTNER_SCOPES, issuance_env
from support.pg import async_url, create_databases, drop_databases
from support.settlement_app import make_settings, prepare_database, running

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCOPES = {
    "partner_app": PARTNER_SCOPES,
    "hospital": HOSPITAL_SCOPES,
    "scanner": "scan",
    "ops": "ops",
}
DETAILS = ("name", "id_number", "card_number", "phone")
HOSPITAL_CLAIMS: dict[str, Any] = {"region_code": "370200", "level": 3}
# The example holder of the documents (VerificationCreate, HolderRow), imported for real so
# that the examples phase reaches a verification that succeeds.
EXAMPLE_HOLDER = {
    "name": "张三",
    "id_number": "360426199101010071",
    "phone": "13800138000",
    "card_number": "A12345678",
    "region_code": "360500",
    "account_balance": "1200.00",
}


class StartedApp:
    """An app whose lifespan the test already runs: lifespan messages are acknowledged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await self.app(scope, receive, send)


@contextlib.contextmanager
def database(name: str, migrate: Any) -> Iterator[str]:
    asyncio.run(create_databases([name]))
    url = async_url(name)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(drop_databases([name]))


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    server = StubServer(PeerStub(), free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def _schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", StartedApp(app), config=fuzz.config())


def _check(outcome: fuzz.Outcome) -> None:
    print(outcome.summary())
    assert outcome.cases["examples"], outcome.summary()
    assert outcome.cases["fuzzing"], outcome.summary()
    assert not outcome.failures, outcome.summary()
    assert not outcome.errors, outcome.summary()


def test_identity(tmp_path: Path, run_id: str, stub: StubServer, output_dir: Path) -> None:
    portal = _get_portal()
    with database(f"essc_{run_id}_fzid", lambda url: upgrade(MIGRATIONS, url)) as url:
        settings = settings_for(
            url,
            tmp_path / "keys",
            gateway_url=stub.url + "/gw",
            issuance_url=stub.url + "/iss",
            settlement_url=stub.url + "/iss",
        )
        app = create_identity(settings)

        def mint(caller: str) -> str:
            if caller.startswith("service:"):
                return stub.stub.service_token(caller.split(":", 1)[1], "urn:essc:identity")
            claims = HOSPITAL_CLAIMS if caller == "hospital" else {}
            return stub.stub.gateway_token(
                f"{caller}-fuzz",
                ClientKind(caller),
                SCOPES[caller],
                audience="urn:essc:identity",
                **claims,
            )

        async def seed() -> dict[str, list[str]]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://identity") as http:
                ops = {"Authorization": "Bearer " + mint("ops")}
                rows = [EXAMPLE_HOLDER, *holders(5, seed=random.Random(7).randrange(2**62))]
                resp = await http.post("/v1/admin/holders", json={"holders": rows}, headers=ops)
                assert resp.status_code == 200, resp.text
                client = await http.post(
                    "/v1/admin/clients",
                    json={"kind": "partner_app", "name": "Fuzz app", "sandbox_secret": True},
                    headers=ops,
                )
                assert client.status_code == 201, client.text
                started = await http.post(
                    "/v1/verifications",
                    json={
                        k: EXAMPLE_HOLDER[k] for k in ("name", "id_number", "card_number", "phone")
                    },
                    headers={"Authorization": "Bearer " + mint("partner_app")},
                )
                assert started.status_code == 201, started.text
                return {
                    "client_id": [client.json()["client_id"]],
                    "card_number": [str(r["card_number"]) for r in rows],
                    "verification_id": [started.json()["verification_id"]],
                }

        with portal.wrap_async_context_manager(app.router.lifespan_context(app)):
            ids = portal.call(seed)
            schema = _schema(app)
            callers = fuzz.callers_from_routes(
                extra={
                    ("GET", "/internal/v1/clients/disabled"): "service:gateway",
                    ("GET", "/internal/v1/clients/{client_id}"): "service:issuance",
                    ("GET", "/internal/v1/holders/{holder_ref}"): "service:issuance",
                    ("POST", "/internal/v1/holders/{holder_ref}/pin-check"): "service:issuance",
                    ("GET", "/internal/v1/events"): "service:issuance",
                }
            )
            fuzz.KindAuth(callers, mint).install(schema)
            fuzz.real_ids(schema, ids)
            _check(fuzz.run(schema, "identity", output_dir))


def test_issuance(tmp_path: Path, run_id: str, output_dir: Path) -> None:
    portal = _get_portal()
    with database(f"essc_{run_id}_fzis", lambda url: None) as url:

        @contextlib.asynccontextmanager
        async def env() -> AsyncIterator[Any]:
            async with issuance_env(tmp_path, database_url=url) as e:
                yield e

        with portal.wrap_async_context_manager(env()) as e:
            peers = e.peers

            def mint(caller: str) -> str:
                if caller == "service:settlement":
                    return peers.settlement_service()["Authorization"].split(" ", 1)[1]
                claims = {"region_code": "370200", "level": 3} if caller == "hospital" else {}
                return peers.internal_token(
                    f"{caller}-fuzz", ClientKind(caller), SCOPES[caller], **claims
                )

            async def seed() -> dict[str, list[str]]:
                ecards = []
                for _ in range(3):
                    holder = peers.add_holder()
                    card = await e.issue(holder, "partner_app-fuzz")
                    ecards.append(card["ecard_id"])
                await e.enable_payment(ecards[0], "partner_app-fuzz")
                return {"ecard_id": ecards}

            ids = portal.call(seed)
            schema = _schema(e.app)
            fuzz.KindAuth(fuzz.callers_from_routes(), mint).install(schema)
            fuzz.real_ids(schema, ids)
            _check(fuzz.run(schema, "issuance", output_dir))


def test_settlement(tmp_path: Path, run_id: str, stub: StubServer, output_dir: Path) -> None:
    portal = _get_portal()
    with database(f"essc_{run_id}_fzst", lambda url: None) as url:
        settings = make_settings(url, tmp_path, stub)
        asyncio.run(prepare_database(settings))

        def mint(caller: str) -> str:
            if caller.startswith("service:"):
                return stub.stub.service_token(caller.split(":", 1)[1])
            claims = HOSPITAL_CLAIMS if caller == "hospital" else {}
            return stub.stub.gateway_token(
                f"{caller}-fuzz", ClientKind(caller), SCOPES[caller], **claims
            )

        @contextlib.asynccontextmanager
        async def api() -> AsyncIterator[Any]:
            async with running(settings, stub.stub) as a:
                yield a

        with portal.wrap_async_context_manager(api()) as a:

            async def seed() -> dict[str, list[str]]:
                hospital = a.hospital("370200", 3, client_id="hospital-fuzz")
                refs, ecards, settlements = [], [], []
                for _ in range(3):
                    ref = await a.open_holder(region="370200")
                    refs.append(ref)
                    ecards.append(stub.stub.add_ecard(ref, "partner_app-fuzz", "370200"))
                bill = [
                    {"code": "A1", "name": "ward", "category": "A", "quantity": "1",
                     "unit_price": "120.00"}
                ]  # fmt: skip
                for ref in refs[:2]:
                    body = await hospital.quote_and_settle(ref, bill, insured_region="370200")
                    settlements.append(body["settlement_id"])
                return {
                    "ecard_id": ecards,
                    "holder_ref": refs,
                    "settlement_id": settlements,
                    "region_code": ["370200", "310000"],
                }

            ids = portal.call(seed)
            schema = _schema(a.app)
            fuzz.KindAuth(fuzz.callers_from_routes(), mint).install(schema)
            fuzz.real_ids(schema, ids)
            _check(fuzz.run(schema, "settlement", output_dir))
