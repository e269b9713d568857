"""The settlement hot path: quote + settle, 16 hospitals at once, on PostgreSQL.

``settle-direct`` drives one real settlement process whose peers are the stub
(:mod:`devkit.peerstub`, its own process): it isolates what settlement itself costs per
journey (client CPU of the process, the database round trips) from the rest of the cluster.
``journey`` (once identity, issuance and the gateway are all real) goes through the gateway:
scan, quote, settle, and sums the CPU of every process.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import aiohttp

from devkit.bench import pgstats
from devkit.bench.core import Meter, Row, cpu_meter, cpu_seconds, process_groups
from devkit.cluster import Cluster, free_port

HOSPITALS = 16
BILL = [
    {"code": "A1", "name": "ward", "category": "A", "quantity": "1", "unit_price": "180.00"},
    {"code": "B1", "name": "drug", "category": "B", "quantity": "2.5", "unit_price": "12.40"},
    {"code": "C1", "name": "extra", "category": "C", "quantity": "1", "unit_price": "30.00"},
]
SCOPES = "scan settlement:write settlement:read reconciliation"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def _quote_and_settle(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str], token: str, key: str
) -> bool:
    """Quote the bench bill with a settlement token and settle it; True if both were 201."""
    status, quote = await _post(
        http,
        base + "/v1/settlements/quotes",
        {"settlement_token": token, "visit": {"type": "outpatient"}, "items": BILL},
        headers,
    )
    if status != 201:
        return False
    status, _ = await _post(
        http,
        base + "/v1/settlements",
        {"quote_id": quote["quote_id"]},
        {**headers, "Idempotency-Key": key},
    )
    return status == 201


async def _baseline(settle: str, stub: str, duration: float) -> tuple[int, float]:
    """Authenticated ``GET /v1/whoami`` from 16 clients: the framework's floor per request."""
    async with aiohttp.ClientSession() as http:
        _, tok = await _post(http, stub + "/_stub/gateway-token", {
            "client_id": "bench-baseline", "kind": "hospital", "scope": SCOPES,
            "region_code": "310000", "level": 1})  # fmt: skip
        headers = {"Authorization": f"Bearer {tok['token']}"}
        count = [0]
        deadline = time.perf_counter() + duration

        async def client() -> None:
            while time.perf_counter() < deadline:
                async with http.get(settle + "/v1/whoami", headers=headers) as resp:
                    await resp.read()
                count[0] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(HOSPITALS)))
        return count[0], time.perf_counter() - started


async def _direct(settle: str, stub: str, duration: float, warmup: float) -> tuple[Tally, float]:
    async with aiohttp.ClientSession() as http:
        holders = [f"bench_{i}_{time.time_ns()}" for i in range(HOSPITALS)]
        for ref in holders:
            payload = {
                "holder_ref": ref,
                "insured_region": "310000",
                "insurance_type": "employee",
                "birth_date": "1980-01-01",
                "gender": "male",
                "opening_balance_fen": 10**10,
            }
            await _post(
                http, stub + "/_stub/events", {"type": "holder.upserted", "payload": payload}
            )
        await asyncio.sleep(2.5)  # the consumer polls the feed
        tally = Tally()
        measuring = [False]

        async def hospital(i: int) -> None:
            client_id = f"bench-hospital-{i}"
            _, tok = await _post(http, stub + "/_stub/gateway-token", {
                "client_id": client_id, "kind": "hospital", "scope": SCOPES,
                "region_code": "310000", "level": 1 + i % 3})  # fmt: skip
            headers = {"Authorization": f"Bearer {tok['token']}"}
            n = 0
            while not stop.is_set():
                _, st = await _post(http, stub + "/_stub/tokens", {
                    "holder_ref": holders[i], "hospital_client_id": client_id,
                    "insured_region": "310000"})  # fmt: skip
                started = time.perf_counter()
                n += 1
                key = f"{client_id}-{n}-{time.time_ns()}"
                if not await _quote_and_settle(http, settle, headers, st["settlement_token"], key):
                    tally.errors += 1
                elif measuring[0]:
                    tally.latencies.append(time.perf_counter() - started)

        stop = asyncio.Event()
        tasks = [asyncio.create_task(hospital(i)) for i in range(HOSPITALS)]
        await asyncio.sleep(warmup)
        measuring[0] = True
        began = time.perf_counter()
        await asyncio.sleep(duration)
        measuring[0] = False
        elapsed = time.perf_counter() - began
        stop.set()
        await asyncio.gather(*tasks)
        return tally, elapsed


def run_direct(cluster: Cluster, *, duration: int) -> list[Row]:
    """Quote + settle against one settlement process with stubbed peers."""
    stub_port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "devkit.peerstub", "--port", str(stub_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stub_url = f"http://127.0.0.1:{stub_port}"
    solo = Cluster.on_free_ports(
        cluster.var_dir / "settle-direct",
        {"settlement": cluster.db_urls["settlement"]},
        environment="test",
        extra_env={
            "SETTLEMENT_GATEWAY_URL": stub_url + "/gw",
            "SETTLEMENT_ISSUANCE_URL": stub_url + "/iss",
            "SETTLEMENT_IDENTITY_URL": stub_url + "/idn",
            "SETTLEMENT_LOG_REQUESTS": "true",  # as the cluster runs (one JSON line a request)
            "SETTLEMENT_EVENT_POLL_SECONDS": "1",
            "SETTLEMENT_RISK_HOLD_SCORE": "1000000",
            # Each bench holder settles hundreds of times a day: not what the flags are for.
            "SETTLEMENT_RISK_DAILY_MAX_SETTLEMENTS": "1000000",
        },
    )
    try:
        solo.run_cli("settlement", "seed-demo")
        solo.start(["settlement"])
        solo.wait_ready(["settlement"])
        pid = solo.procs["settlement"].popen.pid
        with cpu_meter([pid]) as base_cpu:
            base_n, base_s = asyncio.run(
                _baseline(solo.url("settlement"), stub_url, min(5.0, float(duration)))
            )
        with cpu_meter([pid]) as cpu, cpu_meter([stub.pid]) as stub_cpu:
            tally, elapsed = asyncio.run(
                _direct(solo.url("settlement"), stub_url, float(duration), warmup=2.0)
            )
    finally:
        solo.stop()
        stub.terminate()
        stub.wait(10)
    done = len(tally.latencies)
    lat = sorted(tally.latencies)
    # The meters also ran through the warm-up; scale by the journeys of the whole run.
    total_journeys = done * (elapsed + 2.0) / elapsed if elapsed else 0
    per = cpu[0] / max(total_journeys, 1) * 1e6
    base_per = base_cpu[0] / max(base_n, 1) * 1e6
    return [
        Row(
            "settlement",
            "baseline: authenticated GET /v1/whoami, 16 clients",
            base_n / base_s if base_s else 0.0,
            cpu_us_per_op=base_per,
            notes="the framework's floor per request in this run",
        ),
        Row(
            "settlement",
            "quote + settle, 16 hospitals, stubbed peers",
            done / elapsed if elapsed else 0.0,
            statistics.median(lat) * 1000 if lat else None,
            lat[int(len(lat) * 0.99) - 1] * 1000 if lat else None,
            per,
            ratio=per / base_per if base_per else None,
            ratio_of="baseline requests (CPU)",
            notes=(
                f"CPU of the settlement process per journey; stub peers "
                f"{stub_cpu[0] / max(total_journeys, 1) * 1e6:,.0f} µs; errors {tally.errors}"
            ),
            extra={"cpu_us:settlement": round(per, 1), "ops": done},
        ),
    ]


async def _open_holders(cluster: Cluster, holders: list[tuple[str, str]]) -> None:
    """Open the bench holders' accounts in settlement's database, as identity's feed would."""
    from settlement.accounts import service as accounts_service  # devkit seeds what it benches
    from shared.db import Database, make_engine
    from shared.wire import HolderUpserted, InsuranceType

    db = Database(make_engine(cluster.db_urls["settlement"], pool_size=1, max_overflow=0))
    try:
        async with db.sessionmaker() as session, session.begin():
            for holder_ref, region in holders:
                event = HolderUpserted(
                    holder_ref=holder_ref,
                    insured_region=region,
                    insurance_type=InsuranceType.EMPLOYEE,
                    birth_date=date(1980, 1, 1),
                    gender="male",
                    opening_balance_fen=10**10,
                )
                await accounts_service.apply_holder(session, event, datetime.now(UTC))
    finally:
        await db.dispose()


async def _journeys(
    gateway: str,
    hospitals: list[str],
    codes: list[list[str]],
) -> tuple[Tally, float]:
    """Each hospital scans its next payment code, quotes and settles, until its codes run out."""
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def hospital(i: int) -> None:
            headers = {"Authorization": f"Bearer {hospitals[i]}"}
            for n, code in enumerate(codes[i]):
                started = time.perf_counter()
                status, scan = await _post(
                    http,
                    gateway + "/v1/scans",
                    {"qr_token": code, "purpose": "settlement"},
                    headers,
                )
                key = f"j{i}-{n}-{time.time_ns()}"
                if status != 201 or not await _quote_and_settle(
                    http, gateway, headers, scan["settlement_token"], key
                ):
                    tally.errors += 1
                    continue
                tally.latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(hospital(i) for i in range(len(hospitals))))
        elapsed = time.perf_counter() - began
        return tally, elapsed


def _quiet(pids: list[int], *, limit: float = 0.05, timeout: float = 180.0) -> None:
    """Wait until the processes idle (< ``limit`` of a core each over a second): e.g. the feed
    consumers catching up on the holders an earlier scenario loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [cpu_seconds([p]) for p in pids]
        time.sleep(1.0)
        if all(cpu_seconds([p]) - b < limit for p, b in zip(pids, before, strict=True)):
            return


def run_journey(cluster: Cluster, *, duration: int) -> list[Row]:
    """Scan + quote + settle through the gateway, 16 hospitals at once, real processes.

    E-cards (payment enabled) are written into issuance's database and their payment codes
    minted with issuance's QR key, as the issuance bench does: what is measured is the
    hospital's journey, not the holder's PIN (one scrypt per payment code) or verification.
    """
    from devkit.bench.issuance import seed_ecard_async
    from devkit.bench.tokens import access_token
    from shared.tokens.claims import ClientKind
    from shared.tokens.keys import KeyStore
    from shared.tokens.qr import QrPurpose, issue_qr_token

    cluster.run_cli("settlement", "seed-demo")
    parts = ("gateway", "identity", "issuance", "settlement")
    pids = [cluster.procs[p].popen.pid for p in parts]

    per_hospital = max(8, duration * 4)
    # Each holder settles at most 5 times: a holder settling dozens of times a day is what
    # the daily-velocity rule flags, and every flag is an alert written (not the journey).
    cards_each = -(-per_hospital // 5)

    async def setup() -> list[tuple[str, int, str]]:
        cards = []
        for _ in range(HOSPITALS * cards_each):
            ecard_id, seq = await seed_ecard_async(cluster, "bench-partner", sign_level=2)
            cards.append((ecard_id, seq))
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(cluster.db_urls["issuance"])
        try:
            async with engine.connect() as conn:
                refs = [
                    str(
                        (
                            await conn.execute(
                                text("SELECT holder_ref FROM ecard WHERE ecard_id = :e"), {"e": e}
                            )
                        ).scalar_one()
                    )
                    for e, _ in cards
                ]
        finally:
            await engine.dispose()
        await _open_holders(cluster, [(ref, "370200") for ref in refs])
        return [(e, s, r) for (e, s), r in zip(cards, refs, strict=True)]

    cards = asyncio.run(setup())
    hospitals = [
        access_token(
            cluster,
            client_id=f"bench-hospital-{i}",
            kind=ClientKind.HOSPITAL,
            scope=SCOPES,
            region_code="370200",
            level=1 + i % 3,
        )
        for i in range(HOSPITALS)
    ]
    key = KeyStore(cluster.var_dir / "keys" / "issuance").load().signing_key("qr")

    def mint(count: int) -> list[list[str]]:
        """``count`` payment codes per hospital, cycling through the hospital's own e-cards."""
        now = int(time.time())
        out = []
        for h in range(HOSPITALS):
            mine = cards[h * cards_each : (h + 1) * cards_each]
            out.append(
                [
                    issue_qr_token(
                        key, purpose=QrPurpose.PAYMENT, ecard_seq=mine[n % len(mine)][1], iat=now
                    )[0]
                    for n in range(count)
                ]
            )
        return out

    gateway = cluster.url("gateway")
    _quiet(pids)
    asyncio.run(_journeys(gateway, hospitals, mint(3)))  # warm-up
    codes = mint(per_hospital)
    time.sleep(pgstats.STATS_LAG_SECONDS)  # the warm-up's table counters reach the server
    dbs = dict(cluster.db_urls)
    with pgstats.wal_kept(dbs["settlement"]):
        before = {svc: pgstats.snapshot(url) for svc, url in dbs.items()}
        with Meter(process_groups(dict(zip(parts, pids, strict=True)), dbs)) as meter:
            tally, elapsed = asyncio.run(_journeys(gateway, hospitals, codes))
        end_lsn = pgstats.current_lsn(dbs["settlement"])
        start_lsn = next((b.lsn for b in before.values() if b is not None), None)
        oids = {svc: b.oid for svc, b in before.items() if b is not None}
        wal = (
            pgstats.wal_bytes(dbs["settlement"], start_lsn, end_lsn, oids)
            if start_lsn is not None and end_lsn is not None
            else {}
        )
    done = len(tally.latencies)
    extra = meter.breakdown(done)
    db_note = ""
    if end_lsn is not None and all(before.values()):
        time.sleep(pgstats.STATS_LAG_SECONDS)
        after = {svc: pgstats.snapshot(url) for svc, url in dbs.items()}
        notes = []
        for svc in dbs:
            b, a = before[svc], after[svc]
            if b is None or a is None:
                continue
            d = pgstats.delta(b, a, done)
            if svc in wal:
                d.wal_bytes = wal[svc][0] / max(done, 1)
                d.wal_fpi_bytes = wal[svc][1] / max(done, 1)
            extra.update(d.as_extra(f"db:{svc}"))
            wal_text = f", WAL {d.wal_bytes:,.0f} B" if d.wal_bytes is not None else ""
            notes.append(
                f"{svc} {d.commits:.1f} commits, {d.writes:.1f} row writes, "
                f"+{d.bytes:,.0f} B{wal_text}"
            )
        db_note = "; per journey in PostgreSQL: " + "; ".join(notes)
    lat = sorted(tally.latencies)
    return [
        Row(
            "settlement",
            "hospital journey: scan + quote + settle via gateway, 16 hospitals",
            done / elapsed if elapsed else 0.0,
            statistics.median(lat) * 1000 if lat else None,
            lat[max(int(len(lat) * 0.99) - 1, 0)] * 1000 if lat else None,
            meter.total / max(done, 1) * 1e6,
            notes=f"CPU µs per journey ({meter.note(done)}); {done} journeys; "
            f"errors {tally.errors}{db_note}",
            extra=extra,
        )
    ]
