"""Two replicas of identity, issuance and settlement behind one gateway, on PostgreSQL + Redis.

What a second process of a service must not change (issue 6): a QR code is used once, a
settlement posts once, a killed replica costs only the requests it held, rate limits and
revocations hold whichever replica answers. Real uvicorn processes (``devkit.cluster``,
``replicas``), seeded with identity's and settlement's ``seed-demo``; e-cards are made
through the gateway as a partner app would. Which replica served what is read from each
process's own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from devkit.cluster import SERVICES, Cluster
from shared.fieldcrypto import mask_name
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyStore
from support.cluster import pg_cluster
from support.seeded import PIN, SCOPES, Seeded, ecard_with_payment

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

REDIS_URL = os.environ.get("ESSC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PER_ID_NUMBER = 3
ENV = {
    **{f"{part.upper()}_REDIS_URL": REDIS_URL for part in ("gateway", *SERVICES)},
    "SETTLEMENT_EVENT_POLL_SECONDS": "0.2",
    "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.5",
    "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
    "GATEWAY_DISABLED_CLIENTS_POLL_SECONDS": "0.5",
    # The load below is one hospital settling back to back: budgets and risk holds are
    # not what it tests (the per-ID-number verification limit is, below).
    "GATEWAY_RATE_LIMIT_CLIENT": "100000/second",
    "ISSUANCE_QR_RATE_LIMIT": "100000/minute",
    "SETTLEMENT_RISK_HOLD_SCORE": "1000000",
    "IDENTITY_VERIFICATION_RATE_PER_ID_NUMBER": f"{PER_ID_NUMBER}/hour",
}
BILL = [
    {"code": "A1", "name": "ward day", "category": "A", "quantity": "1", "unit_price": "30.00"},
    {"code": "C1", "name": "single room", "category": "C", "quantity": "1", "unit_price": "8.00"},
]
WORKERS = 4


def _redis_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Replicated:
    """The seeded cluster and what the tests made in it."""

    seeded: Seeded
    ecards: list[str] = field(default_factory=list)

    @property
    def cluster(self) -> Cluster:
        return self.seeded.cluster


@pytest.fixture(scope="module")
def rep(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Replicated]:
    if not _redis_reachable(REDIS_URL):
        message = f"Redis not reachable at {REDIS_URL}: the replica tests need it"
        if os.environ.get("ESSC_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("replicas-e2e")
    with pg_cluster(tmp, run_id + "rp", extra_env=ENV, replicas={svc: 2 for svc in SERVICES}) as c:
        var = c.var_dir
        c.run_cli(
            "identity",
            "seed-demo",
            "--out",
            str(var / "demo-clients.json"),
            "--holders-out",
            str(var / "demo-holders.json"),
            "--holders",
            str(WORKERS + 2),
        )
        c.run_cli("settlement", "seed-demo")
        seeded = Seeded(
            c,
            json.loads((var / "demo-clients.json").read_text()),
            json.loads((var / "demo-holders.json").read_text()),
        )
        rep = Replicated(seeded)
        with httpx.Client(base_url=seeded.url, timeout=15) as http:
            app = seeded.auth("partner_app")
            rep.ecards = [
                ecard_with_payment(http, seeded, h, app) for h in seeded.holders[:WORKERS]
            ]
            deadline = time.monotonic() + 30
            for ecard in rep.ecards:  # accounts open from identity's feed
                while (
                    http.get(f"/v1/ecards/{ecard}/account", headers=app).json().get("opened")
                    is not True
                ):
                    assert time.monotonic() < deadline, "accounts did not open"
                    time.sleep(0.1)
        yield rep


# --- helpers ---------------------------------------------------------------------------


def requests_served(cluster: Cluster, name: str, route: str, method: str = "POST") -> int:
    """How many requests of ``route`` the process ``name`` finished (its own /metrics)."""
    text = httpx.get(cluster.url(name) + "/metrics", timeout=5).text
    total = 0.0
    for labels, value in re.findall(r"^essc_http_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        if f'route="{route}"' in labels and f'method="{method}"' in labels:
            total += float(value)
    return int(total)


def gateway_metric(cluster: Cluster, name: str, **labels: str) -> float:
    text = httpx.get(cluster.url("gateway") + "/metrics", timeout=5).text
    total = 0.0
    for raw, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        if all(f'{k}="{v}"' in raw for k, v in labels.items()):
            total += float(value)
    return total


def internal_auth(cluster: Cluster, client: dict[str, Any], kind: str, service: str) -> str:
    """The internal token the gateway would mint for ``client`` calling ``service``."""
    ring = KeyStore(cluster.var_dir / "keys" / "gateway").load()
    now = int(time.time())
    claims = InternalTokenClaims(
        iss="urn:essc:gateway",
        sub=client["client_id"],
        aud=f"urn:essc:{service}",
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(12),
        client_id=client["client_id"],
        kind=ClientKind(kind),
        scope=SCOPES[kind],
        region_code=client.get("region_code"),
        level=client.get("level"),
    )
    return "Bearer " + sign_token(INTERNAL, claims, ring.signing_key("internal"))


async def settlement_token(
    http: httpx.AsyncClient, rep: Replicated, ecard: str, *, purpose: str = "payment"
) -> httpx.Response:
    """A payment QR of ``ecard`` scanned by the hospital (the scan's answer)."""
    seeded = rep.seeded
    body: dict[str, str] = {"purpose": purpose}
    if purpose == "payment":
        body["pin"] = PIN
    qr = await http.post(
        f"/v1/ecards/{ecard}/qrcodes", json=body, headers=seeded.auth("partner_app")
    )
    if qr.status_code != 201:
        return qr
    return await http.post(
        "/v1/scans",
        json={"qr_token": qr.json()["qr_token"], "purpose": "settlement"},
        headers=seeded.auth("hospital"),
    )


async def quote(http: httpx.AsyncClient, rep: Replicated, ecard: str) -> httpx.Response:
    scan = await settlement_token(http, rep, ecard)
    if scan.status_code != 201:
        return scan
    return await http.post(
        "/v1/settlements/quotes",
        json={
            "settlement_token": scan.json()["settlement_token"],
            "visit": {"type": "outpatient"},
            "items": BILL,
        },
        headers=rep.seeded.auth("hospital"),
    )


async def pg(rep: Replicated, svc: str, sql: str, *args: object) -> Any:
    url = rep.cluster.db_urls[svc].replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def ledger_check(http: httpx.AsyncClient, rep: Replicated) -> dict[str, Any]:
    resp = await http.get("/v1/admin/ledger/check", headers=rep.seeded.auth("ops"))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# --- 1. one QR, twenty concurrent scans through the gateway --------------------------------


@pytest.mark.asyncio
async def test_twenty_concurrent_scans_through_the_gateway_succeed_once(rep: Replicated) -> None:
    c, seeded = rep.cluster, rep.seeded
    before = {n: requests_served(c, n, "/v1/scans") for n in c.processes("issuance")}
    async with httpx.AsyncClient(base_url=seeded.url, timeout=30) as http:
        qr = await http.post(
            f"/v1/ecards/{rep.ecards[0]}/qrcodes",
            json={"purpose": "identity"},
            headers=seeded.auth("partner_app"),
        )
        assert qr.status_code == 201, qr.text
        body = {"qr_token": qr.json()["qr_token"], "purpose": "identity"}
        scanner = seeded.auth("scanner")
        results = await asyncio.gather(
            *(http.post("/v1/scans", json=body, headers=scanner) for _ in range(20))
        )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 19, codes
    for r in results:
        if r.status_code == 409:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"].endswith("/qr-already-used"), r.text
        else:
            assert r.json()["holder"]["name_masked"] == mask_name(seeded.holders[0]["name"])
    served = {n: requests_served(c, n, "/v1/scans") - before[n] for n in before}
    assert sum(served.values()) == 20, served
    assert all(v > 0 for v in served.values()), served  # both processes answered scans


# --- 2. one Idempotency-Key, every replica at once ----------------------------------------


@pytest.mark.asyncio
async def test_one_key_posted_to_both_replicas_and_the_gateway_posts_once(
    rep: Replicated,
) -> None:
    c, seeded = rep.cluster, rep.seeded
    hospital = seeded.client("hospital")
    key = "replicas-" + secrets.token_hex(8)
    async with httpx.AsyncClient(timeout=30) as http:
        async with httpx.AsyncClient(base_url=seeded.url, timeout=30) as gw:
            q = await quote(gw, rep, rep.ecards[1])
            assert q.status_code == 201, q.text
        body = {"quote_id": q.json()["quote_id"]}
        direct = internal_auth(c, hospital, "hospital", "settlement")
        targets = [(c.url(name), direct) for name in c.processes("settlement")] * 3 + [
            (seeded.url, "Bearer " + seeded.token("hospital"))
        ] * 4
        results = await asyncio.gather(
            *(
                http.post(
                    base + "/v1/settlements",
                    json=body,
                    headers={"Authorization": auth, "Idempotency-Key": key},
                )
                for base, auth in targets
            )
        )
        replay = await http.post(
            seeded.url + "/v1/settlements",
            json=body,
            headers={**seeded.auth("hospital"), "Idempotency-Key": key},
        )
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409}, [(r.status_code, r.text) for r in results]
    answers = [r.json() for r in results if r.status_code == 201]
    assert answers, codes
    assert all(a == answers[0] for a in answers), answers
    fresh = [r for r in results if r.status_code == 201 and "idempotency-replayed" not in r.headers]
    assert len(fresh) == 1, codes  # one original; every other 201 is the stored answer
    for r in results:
        if r.status_code == 409:
            assert r.json()["type"].endswith("/idempotency-in-flight"), r.text
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotency-replayed"] == "true"
    assert replay.json() == answers[0]
    sid = answers[0]["settlement_id"]
    assert await pg(rep, "settlement", "SELECT count(*) FROM settlement WHERE quote_id = $1",
                    body["quote_id"]) == 1  # fmt: skip
    assert await pg(rep, "settlement",
                    "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement' AND ref = $1",
                    sid) == 1  # fmt: skip
