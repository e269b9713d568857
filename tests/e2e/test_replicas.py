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
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
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
from support.journey import seed_demo
from support.seeded import PIN, SCOPES, Seeded, ecard_with_payment

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

REDIS_URL = os.environ.get("ESSC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PER_ID_NUMBER = 3
ENV = {
    **{f"{part.upper()}_REDIS_URL": REDIS_URL for part in ("gateway", *SERVICES)},
    # Six service processes on a PostgreSQL shared with other test runs: pools that fit.
    **{f"{svc.upper()}_DB_POOL_SIZE": "4" for svc in SERVICES},
    **{f"{svc.upper()}_DB_MAX_OVERFLOW": "4" for svc in SERVICES},
    "SETTLEMENT_EVENT_POLL_SECONDS": "0.2",
    "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.5",
    "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
    "GATEWAY_DISABLED_CLIENTS_POLL_SECONDS": "0.5",
    "GATEWAY_BREAKER_OPEN_SECONDS": "2",  # a restarted replica gets its trial sooner
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
WORKERS = 3


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
        seed_demo(c, holders=WORKERS + 2)
        seeded = Seeded(
            c,
            json.loads((c.var_dir / "demo-clients.json").read_text()),
            json.loads((c.var_dir / "demo-holders.json").read_text()),
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
    for labels, value in re.findall(r"^essc_http_requests_total\{(.*)\} (\S+)$", text, re.M):
        if f'route="{route}"' in labels and f'method="{method}"' in labels:
            total += float(value)
    return int(total)


def gateway_metric(cluster: Cluster, name: str, **labels: str) -> float:
    text = httpx.get(cluster.url("gateway") + "/metrics", timeout=5).text
    total = 0.0
    for raw, value in re.findall(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M):
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


# --- 3. SIGKILL one replica under load ------------------------------------------------------


@dataclass
class Call:
    """One request a client made: when it started and ended, and how it ended."""

    what: str
    started: float
    ended: float
    status: int | None  # None: the client saw no HTTP answer at all
    detail: str = ""


@dataclass
class Load:
    """Hospitals settling back to back through the gateway, every request recorded."""

    rep: Replicated
    http: httpx.AsyncClient
    calls: list[Call] = field(default_factory=list)
    settled: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> settlement id
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(
        self, what: str, method: str, path: str, headers: dict[str, str], body: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            resp = await self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.calls.append(Call(what, started, time.monotonic(), None, type(exc).__name__))
            return None
        detail = resp.text[:300] if resp.status_code >= 400 else ""
        self.calls.append(Call(what, started, time.monotonic(), resp.status_code, detail))
        return resp

    async def worker(self, ecard: str) -> None:
        seeded = self.rep.seeded
        app, hospital = seeded.auth("partner_app"), seeded.auth("hospital")
        while not self.stop.is_set():
            qr = await self.call(
                "qr", "POST", f"/v1/ecards/{ecard}/qrcodes", app, {"purpose": "payment", "pin": PIN}
            )
            if qr is None or qr.status_code != 201:
                continue
            scan = await self.call(
                "scan", "POST", "/v1/scans", hospital,
                {"qr_token": qr.json()["qr_token"], "purpose": "settlement"},
            )  # fmt: skip
            if scan is None or scan.status_code != 201:
                continue
            quoted = await self.call(
                "quote", "POST", "/v1/settlements/quotes", hospital,
                {"settlement_token": scan.json()["settlement_token"],
                 "visit": {"type": "outpatient"}, "items": BILL},
            )  # fmt: skip
            if quoted is None or quoted.status_code != 201:
                continue
            key = "load-" + secrets.token_hex(8)
            body = {"quote_id": quoted.json()["quote_id"]}
            for _ in range(50):  # a hospital retries an unanswered settlement with its key
                done = await self.call(
                    "settle", "POST", "/v1/settlements", {**hospital, "Idempotency-Key": key}, body
                )
                if done is not None and done.status_code == 201:
                    self.settled[key] = done.json()["settlement_id"]
                    break
                if done is not None and done.status_code < 500 and done.status_code != 409:
                    break  # recorded; the assertions below report it
                await asyncio.sleep(0.05)


async def _wait_for(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll ``check`` until true; the monotonic time it first was (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic()


# The killed process; a route it serves in the load (warm-up); a GET that shows it back.
KILLS = {
    "settlement-2": ("/v1/settlements", "/v1/settlements/{settlement_id}"),
    "issuance-2": ("/v1/scans", "/v1/ecards/{ecard_id}"),
}


@pytest.mark.parametrize("victim", list(KILLS))
@pytest.mark.asyncio
async def test_sigkill_of_a_replica_under_load_costs_only_its_in_flight_requests(
    rep: Replicated, victim: str
) -> None:
    """Issuance's death also reaches settlement, which resolves settlement tokens there."""
    c = rep.cluster
    upstream = victim.split("-", 1)[0]
    warm_route, back_route = KILLS[victim]
    settlements_before = await pg(rep, "settlement", "SELECT count(*) FROM settlement")
    errors_before = gateway_metric(c, "essc_gateway_upstream_errors_total", upstream=upstream)
    async with httpx.AsyncClient(base_url=rep.seeded.url, timeout=30) as http:
        load = Load(rep, http)
        workers = [asyncio.create_task(load.worker(e)) for e in rep.ecards[:WORKERS]]
        try:
            # Warm: both settlement processes are settling before the kill.
            await _wait_for(
                lambda: asyncio.to_thread(lambda: requests_served(c, victim, warm_route) >= 3),
                timeout=30,
            )
            proc = c.procs[victim].popen
            kill_sent = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            dead_at = time.monotonic()

            async def breaker_open() -> bool:
                state = await asyncio.to_thread(
                    gateway_metric, c, "essc_gateway_breaker_state", upstream=upstream
                )
                return state >= 1

            opened_at = await _wait_for(breaker_open, timeout=10)
            await asyncio.sleep(max(0.0, dead_at + 2.0 - time.monotonic()))
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
        check = await ledger_check(http, rep)

    after_kill = [x for x in load.calls if x.started >= dead_at]
    failed = [x for x in load.calls if x.status is None or x.status >= 500]
    held = [x for x in failed if x.started < dead_at and x.ended > kill_sent]
    stray = [x for x in failed if x not in held]
    unexpected = [x for x in load.calls if x.status is not None and 400 <= x.status < 500]
    errors = gateway_metric(c, "essc_gateway_upstream_errors_total", upstream=upstream)
    print(
        f"\nreplicas: {victim} killed: {len(load.calls)} requests, "
        f"{len(after_kill)} after the kill; "
        f"{len(held)} failed in flight at the kill ({[(x.what, x.status) for x in held]}); "
        f"breaker open {opened_at - kill_sent:.3f}s after SIGKILL; "
        f"gateway upstream errors {errors - errors_before:.0f}; {len(load.settled)} settled"
    )
    assert not stray, stray  # no 5xx but for requests in flight at the kill
    assert not unexpected, unexpected
    assert len(after_kill) >= 10, len(after_kill)  # the stream went on, on the other replica
    assert len(held) <= WORKERS
    assert opened_at - kill_sent < 5.0  # the gateway stopped sending to it within seconds
    # Nothing half-committed: every settlement a client was answered is in the books once,
    # none is there that no client could learn of, and the books balance.
    assert check["balanced"] is True, check
    assert check["orphan_transactions"] == 0, check
    assert check["unmatched_settlements"] == 0, check
    ids = list(load.settled.values())
    assert len(set(ids)) == len(ids)
    settlements = await pg(rep, "settlement", "SELECT count(*) FROM settlement")
    assert settlements - settlements_before == len(ids)
    assert await pg(rep, "settlement",
                    "SELECT count(*) FROM ledger_tx WHERE kind = 'settlement' AND ref = ANY($1)",
                    ids) == len(ids)  # fmt: skip
    unanswered = "SELECT count(*) FROM idempotency_record WHERE status_code IS NULL"
    assert await pg(rep, "settlement", unanswered) == 0

    # Restarted, the replica is back in rotation once its breaker lets a trial through.
    c.start([victim])
    c.wait_ready([victim], timeout=60)
    async with httpx.AsyncClient(base_url=rep.seeded.url, timeout=30) as http:
        path = back_route.format(settlement_id=ids[0], ecard_id=rep.ecards[0])
        caller = rep.seeded.auth("hospital" if upstream == "settlement" else "partner_app")

        async def victim_serves() -> bool:
            resp = await http.get(path, headers=caller)
            assert resp.status_code == 200, resp.text
            served = await asyncio.to_thread(requests_served, c, victim, back_route, "GET")
            return served > 0

        await _wait_for(victim_serves, timeout=20)


# --- 4. limits and revocations are shared, not per process ---------------------------------


@pytest.mark.asyncio
async def test_verification_limit_per_id_number_holds_across_identity_replicas(
    rep: Replicated,
) -> None:
    """The per-ID-number budget is counted in Redis: split over two processes, the fourth
    attempt is still refused (in process memory each would have seen two of the limit three)."""
    c, seeded = rep.cluster, rep.seeded
    holder = seeded.holders[WORKERS]  # never verified before
    details = {k: holder[k] for k in ("name", "id_number", "card_number", "phone")}
    names = c.processes("identity")
    before = {n: requests_served(c, n, "/v1/verifications") for n in names}
    async with httpx.AsyncClient(base_url=seeded.url, timeout=30) as http:
        answers = [
            await http.post("/v1/verifications", json=details, headers=seeded.auth("partner_app"))
            for _ in range(PER_ID_NUMBER + 1)
        ]
    codes = [r.status_code for r in answers]
    assert codes == [201] * PER_ID_NUMBER + [429], [r.text for r in answers]
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert int(answers[-1].headers["retry-after"]) >= 1
    served = {n: requests_served(c, n, "/v1/verifications") - before[n] for n in names}
    assert sum(served.values()) == PER_ID_NUMBER + 1, served
    assert all(0 < v < PER_ID_NUMBER + 1 for v in served.values()), served


@pytest.mark.asyncio
async def test_a_disabled_client_is_refused_whichever_identity_replica_answers(
    rep: Replicated,
) -> None:
    """Disabling is a row in identity's database. A client disabled on one identity process
    gets no token from the other, and the gateway refuses its live token within seconds; with
    the first identity process dead, a client disabled on the second is refused all the same
    (the gateway's revocation feed is not tied to one process). Runs last: it kills one."""
    c, seeded = rep.cluster, rep.seeded
    one, two = c.processes("identity")
    form = {"grant_type": "client_credentials"}
    ops = internal_auth(c, seeded.client("ops"), "ops", "identity")
    async with httpx.AsyncClient(timeout=30) as http:

        async def live_token(entry: dict[str, Any]) -> dict[str, str]:
            basic = (entry["client_id"], entry["client_secret"])
            for name in (one, two):
                got = await http.post(c.url(name) + "/oauth/token", data=form, auth=basic)
                assert got.status_code == 200, got.text
            token = {"Authorization": "Bearer " + got.json()["access_token"]}
            assert (await http.get(probe, headers=token)).status_code == 404  # let through
            return token

        async def refused_within_seconds(token: dict[str, str]) -> float:
            async def refused() -> bool:
                resp = await http.get(probe, headers=token)
                assert resp.status_code in (401, 404), resp.text
                return resp.status_code == 401

            disabled_at = time.monotonic()
            return await _wait_for(refused, timeout=10) - disabled_at

        probe = seeded.url + "/v1/settlements/st_none"
        first, second = seeded.client("hospital", 1), seeded.client("hospital", 2)
        token, token2 = await live_token(first), await live_token(second)

        # Disabled on the first process: the second refuses it a token, the gateway its token.
        resp = await http.post(
            f"{c.url(one)}/v1/admin/clients/{first['client_id']}/disable",
            headers={"Authorization": ops},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "disabled"
        late = await refused_within_seconds(token)
        basic = (first["client_id"], first["client_secret"])
        got = await http.post(c.url(two) + "/oauth/token", data=form, auth=basic)
        assert got.status_code == 401, got.text
        assert got.json()["error"] == "invalid_client"

        # The first identity process dies; a client disabled through the gateway (so on the
        # second) is still refused by the gateway within seconds.
        proc = c.procs[one].popen
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        resp = await http.post(
            f"{seeded.url}/v1/admin/clients/{second['client_id']}/disable",
            headers=seeded.auth("ops"),
        )
        assert resp.status_code == 200, resp.text
        later = await refused_within_seconds(token2)
    print(f"\nreplicas: disabled clients refused {late:.2f}s and {later:.2f}s after")
