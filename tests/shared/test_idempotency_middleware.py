"""Idempotency-Key on every POST of a service that moves no money (the shared middleware)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase

from shared.app import build_service_app
from shared.auth import PrincipalDep
from shared.db import new_metadata
from shared.fieldcrypto import FieldCipher
from shared.idempotency import idempotency_table
from shared.settings import ServiceSettings
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from support.pg import async_url, create_databases, drop_databases

pytestmark = pytest.mark.asyncio


class Base(DeclarativeBase):
    metadata = new_metadata()


TABLE = idempotency_table(Base.metadata)


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0
        self.fail = False


def make_app(database_url: str, keys: Path, probe: Probe) -> Any:
    router = APIRouter()

    @router.post("/v1/things", status_code=201)
    async def create(body: dict[str, Any], principal: PrincipalDep) -> dict[str, Any]:
        probe.calls += 1
        if probe.delay:
            await asyncio.sleep(probe.delay)
        if probe.fail:
            from shared.problems import ConflictError

            raise ConflictError("try again")
        return {
            "n": probe.calls,
            "secret": "token-" + str(body.get("x")),
            "who": principal.client_id,
        }

    async def startup(runtime: Any) -> None:
        async with runtime.db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        runtime.idempotency_cipher = FieldCipher({1: os.urandom(32)})

    settings = ServiceSettings(database_url=database_url, keys_dir=keys, environment="test")
    return build_service_app(
        settings=settings,
        service="probe",
        title="probe",
        description="probe",
        key_purposes=(),
        routers=[router],
        on_startup=[startup],
        idempotency_table=TABLE,
    )


def token(app: Any, client_id: str) -> str:
    now = int(time.time())
    claims = InternalTokenClaims(
        iss="urn:essc:probe",
        aud="urn:essc:probe",
        sub=client_id,
        client_id=client_id,
        kind=ClientKind.PARTNER_APP,
        scope="ecard:issue",
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(8),
    )
    return sign_token(INTERNAL, claims, app.state.runtime.ring.signing_key("internal"))


@pytest.fixture(scope="module")
def pg_database(run_id: str) -> Iterator[str]:
    # Requested lazily from inside an async fixture: run the set-up on a thread of its own.
    name = f"essc_{run_id}_idmw"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create_databases([name])).result()
    try:
        yield async_url(name)
    finally:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, drop_databases([name])).result()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idmw-keys")


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, keys_dir: Path
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, Probe]]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/p.db"
    probe = Probe()
    app = make_app(url, keys_dir, probe)
    async with app.router.lifespan_context(app):
        async with app.state.runtime.db.engine.begin() as conn:
            await conn.execute(text("DELETE FROM idempotency_record"))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client, probe


def headers(app: Any, key: str | None, client: str = "app_a") -> dict[str, str]:
    out = {"Authorization": f"Bearer {token(app, client)}"}
    if key is not None:
        out["Idempotency-Key"] = key
    return out


async def test_replay_returns_the_stored_answer_once_executed(env: Any) -> None:
    app, client, probe = env
    first = await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k1"))
    again = await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k1"))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() == {"n": 1, "secret": "token-1", "who": "app_a"}
    assert again.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert probe.calls == 1
    metrics = (await client.get("/metrics")).text
    assert "essc_idempotent_replays_total 1.0" in metrics
    # The replay never reached the router, and is still counted under its route's template.
    assert (
        'essc_http_requests_total{method="POST",route="/v1/things",service="probe",status="201"}'
        " 2.0"
    ) in metrics
    # Without a key every POST runs.
    await client.post("/v1/things", json={"x": 1}, headers=headers(app, None))
    assert probe.calls == 2


async def test_the_answer_is_stored_before_it_is_sent(env: Any) -> None:
    """A client that retries the moment it has the answer gets a replay, not a 409."""
    app, _client, _probe = env
    sent = {**headers(app, "k-race"), "content-type": "application/json", "content-length": "8"}
    stored_when_sent: list[object] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"x": 3}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            async with app.state.runtime.db.engine.connect() as conn:
                row = await conn.execute(
                    text("SELECT status_code FROM idempotency_record WHERE key = 'k-race'")
                )
                stored_when_sent.append(row.scalar_one())

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/things",
        "raw_path": b"/v1/things",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    await app(scope, receive, send)
    assert stored_when_sent == [201]


async def test_keys_are_scoped_per_client(env: Any) -> None:
    app, client, probe = env
    await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k", "app_a"))
    other = await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k", "app_b"))
    assert other.json()["who"] == "app_b"
    assert probe.calls == 2


async def test_other_body_is_422_and_bad_key_is_400(env: Any) -> None:
    app, client, probe = env
    await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k2"))
    reused = await client.post("/v1/things", json={"x": 2}, headers=headers(app, "k2"))
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    bad = await client.post("/v1/things", json={"x": 1}, headers=headers(app, "k" * 256))
    assert bad.status_code == 400
    assert bad.json()["type"].endswith("/idempotency-key-invalid")
    assert probe.calls == 1


async def test_failed_request_releases_the_key(env: Any) -> None:
    app, client, probe = env
    probe.fail = True
    assert (await client.post("/v1/things", json={}, headers=headers(app, "k3"))).status_code == 409
    probe.fail = False
    retry = await client.post("/v1/things", json={}, headers=headers(app, "k3"))
    assert retry.status_code == 201
    assert "idempotency-replayed" not in retry.headers
    assert probe.calls == 2


async def test_concurrent_retry_is_409_in_flight(env: Any) -> None:
    app, client, probe = env
    probe.delay = 0.5
    first = asyncio.create_task(client.post("/v1/things", json={}, headers=headers(app, "k4")))
    await asyncio.sleep(0.15)
    second = await client.post("/v1/things", json={}, headers=headers(app, "k4"))
    assert second.status_code == 409
    assert second.json()["type"].endswith("/idempotency-in-flight")
    assert (await first).status_code == 201
    assert probe.calls == 1


async def test_unauthenticated_passes_through_to_401(env: Any) -> None:
    _, client, probe = env
    resp = await client.post("/v1/things", json={}, headers={"Idempotency-Key": "k5"})
    assert resp.status_code == 401
    assert probe.calls == 0


async def test_stored_answers_are_encrypted_at_rest(env: Any) -> None:
    app, client, _ = env
    await client.post("/v1/things", json={"x": 424242}, headers=headers(app, "k6"))
    async with app.state.runtime.db.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT response_body FROM idempotency_record"))).scalar()
    assert raw is not None
    assert b"424242" not in bytes(raw)
    assert b"token-" not in bytes(raw)


async def test_lost_database_at_the_claim_is_a_503_problem(env: Any) -> None:
    """The middleware sits outside the app's problem handlers: it answers a lost database
    itself (503 problem, nothing run), never with a bare 500 text."""
    from devkit.cluster import free_port
    from shared.db import make_engine

    app, client, probe = env
    db = app.state.runtime.db
    kept = db.engine
    dead = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone")
    db.engine = dead
    try:
        resp = await client.post("/v1/things", json={}, headers=headers(app, "k7"))
    finally:
        db.engine = kept
        await dead.dispose()
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == 503
    assert resp.headers["retry-after"] == "1"
    assert probe.calls == 0


async def test_a_claim_released_under_our_feet_is_claimed_again_not_a_500(env: Any) -> None:
    """The claim our INSERT conflicted with can be deleted (its request failed) before we
    read it: the middleware claims again instead of failing on the missing row (was a 500).

    Simulated in the claim's own transaction (the row vanishes right before the read), which
    the retry's rollback undoes: the second attempt then finds the stored answer again."""
    from sqlalchemy import event

    app, client, probe = env
    first = await client.post("/v1/things", json={}, headers=headers(app, "gone"))
    assert first.status_code == 201
    deleted: list[str] = []

    def vanish(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Right before the claim's read: the row it conflicted with disappears.
        if not deleted and statement.lstrip().upper().startswith("SELECT"):
            if "idempotency_record" in statement:
                cursor.execute("DELETE FROM idempotency_record")
                deleted.append(statement)

    engine = app.state.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", vanish)
    try:
        again = await client.post("/v1/things", json={}, headers=headers(app, "gone"))
    finally:
        event.remove(engine, "before_cursor_execute", vanish)
    assert deleted, "the claim's read never ran"
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert probe.calls == 1


async def test_expired_records_are_purged_in_batches_and_live_ones_kept(env: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from shared.idempotency import purge_expired_batch

    app, client, _ = env
    for i in range(5):
        await client.post("/v1/things", json={"i": i}, headers=headers(app, f"p{i}"))
    engine = app.state.runtime.db.engine
    async with engine.begin() as conn:
        await conn.execute(
            update(TABLE)
            .where(TABLE.c.key.in_(["p0", "p1", "p2"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await purge_expired_batch(engine, TABLE, batch=2) == 2
    assert await purge_expired_batch(engine, TABLE, batch=2) == 1
    assert await purge_expired_batch(engine, TABLE, batch=2) == 0
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT key FROM idempotency_record"))).scalars().all()
    assert sorted(left) == ["p3", "p4"]
