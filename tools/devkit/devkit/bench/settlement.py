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
from typing import Any

import aiohttp

from devkit.bench.core import Row, cpu_meter
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
                status, quote = await _post(
                    http,
                    settle + "/v1/settlements/quotes",
                    {"settlement_token": st["settlement_token"], "visit": {"type": "outpatient"},
                     "items": BILL},
                    headers,
                )  # fmt: skip
                if status != 201:
                    tally.errors += 1
                    continue
                n += 1
                status, _ = await _post(
                    http,
                    settle + "/v1/settlements",
                    {"quote_id": quote["quote_id"]},
                    {**headers, "Idempotency-Key": f"{client_id}-{n}-{time.time_ns()}"},
                )
                if status != 201:
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
            "SETTLEMENT_LOG_REQUESTS": "false",
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
        ),
    ]
