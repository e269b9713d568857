"""Partner webhooks in process against a receiver on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from support.issuance_env import IssuanceEnv, issuance_env

pytestmark = pytest.mark.asyncio
SECRET = "whsec-test-" + "x" * 20


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    hold: asyncio.Event | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    acked: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        record = {
            "body": orjson.loads(body),
            "raw": body,
            "headers": dict(request.headers),
            "at": time.monotonic(),
        }
        self.attempts.append(record)
        if self.hold is not None:
            await self.hold.wait()
        if len(self.attempts) <= self.fail_first:
            return web.Response(status=503)
        self.acked.append(record)
        return web.Response(status=204)


async def serve(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return runner


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def valid_signature(record: dict[str, Any]) -> bool:
    headers = record["headers"]
    ts = headers["X-ESSC-Timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + record["raw"], hashlib.sha256)
    return bool(headers["X-ESSC-Signature"] == "v1=" + expected.hexdigest())


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


async def running_env(tmp_path: Path, receiver: Receiver) -> AsyncIterator[IssuanceEnv]:
    runner = await serve(receiver)
    try:
        async with issuance_env(tmp_path, background_tasks=True) as env:
            env.peers.clients["app-a"] = {
                "client_id": "app-a",
                "kind": "partner_app",
                "name": "App A",
                "status": "active",
                "webhook_url": receiver.url,
                "webhook_secret": SECRET,
            }
            yield env
    finally:
        await runner.cleanup()


async def test_each_event_once_with_a_valid_signature(tmp_path: Path, receiver: Receiver) -> None:
    async for env in running_env(tmp_path, receiver):
        holder = env.peers.add_holder()
        card = await env.issue(holder)
        headers = env.peers.partner("app-a")
        await env.client.post(f"/v1/ecards/{card['ecard_id']}/suspend", headers=headers)
        await env.client.post(f"/v1/ecards/{card['ecard_id']}/resume", headers=headers)
        await wait_for(lambda: len(receiver.acked) == 2)
        await asyncio.sleep(0.3)  # a few relay passes: nothing is sent again
        assert len(receiver.attempts) == 2
        types = [r["body"]["type"] for r in receiver.acked]
        assert types == ["ecard.suspended", "ecard.resumed"]
        for record in receiver.acked:
            assert valid_signature(record)
            body = record["body"]
            assert record["headers"]["X-ESSC-Event-Id"] == body["event_id"]
            assert body["data"]["ecard_id"] == card["ecard_id"]
            assert set(body) == {"event_id", "type", "occurred_at", "data"}
        assert len({r["body"]["event_id"] for r in receiver.acked}) == 2
        metrics = (await env.client.get("/metrics")).text
        assert 'essc_webhook_deliveries_total{outcome="success"} 2.0' in metrics
        assert 'essc_outbox_pending{outbox="webhook"} 0.0' in metrics


async def test_a_receiver_failing_twice_gets_it_on_the_third_try(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    async for env in running_env(tmp_path, receiver):
        card = await env.issue(env.peers.add_holder())
        await env.client.post(
            f"/v1/ecards/{card['ecard_id']}/suspend", headers=env.peers.partner("app-a")
        )
        await wait_for(lambda: len(receiver.acked) == 1)
        assert len(receiver.attempts) == 3
        ids = {r["body"]["event_id"] for r in receiver.attempts}
        assert len(ids) == 1  # the same event id on every try
        gaps = [
            b["at"] - a["at"]
            for a, b in zip(receiver.attempts, receiver.attempts[1:], strict=False)
        ]
        assert all(g > 0 for g in gaps)
        assert all(valid_signature(r) for r in receiver.attempts)


async def test_the_status_change_does_not_wait_for_the_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.hold = asyncio.Event()
    async for env in running_env(tmp_path, receiver):
        card = await env.issue(env.peers.add_holder())
        resp = await env.client.post(
            f"/v1/ecards/{card['ecard_id']}/suspend", headers=env.peers.partner("app-a")
        )
        assert resp.status_code == 200
        assert resp.json()["status"] == "suspended"
        # The receiver has the event but has not answered: the request already completed.
        await wait_for(lambda: len(receiver.attempts) == 1)
        assert receiver.acked == []
        receiver.hold.set()
        await wait_for(lambda: len(receiver.acked) == 1)


async def test_partner_without_webhook_is_skipped(tmp_path: Path, receiver: Receiver) -> None:
    async for env in running_env(tmp_path, receiver):
        card = await env.issue(env.peers.add_holder(), "app-b")
        await env.client.post(
            f"/v1/ecards/{card['ecard_id']}/suspend", headers=env.peers.partner("app-b")
        )
        await wait_for(
            lambda env=env: 'essc_webhook_deliveries_total{outcome="no_endpoint"}' in _metrics(env)
        )
        assert receiver.attempts == []


def _metrics(env: IssuanceEnv) -> str:
    return bytes(env.app.state.metrics.render()).decode()
