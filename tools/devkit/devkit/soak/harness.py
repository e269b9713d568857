"""The soak from start to verdict: a real cluster on PostgreSQL (+ Redis), the traffic, the checks.

:func:`run` creates fresh databases, migrates, seeds the demo clients and policies, starts
the four parts as uvicorn processes, imports the run's synthetic holders through the
gateway (as ops), drives the workers for the given time, then checks, while the cluster is
still up: settlement's ledger check, every ledger transaction's debits against its credits
in PostgreSQL, every acknowledged settlement and refund stored exactly once, each hospital's
own books against the platform's reconciliation, no 5xx, and each process's RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from devkit.bench.core import cpu_seconds
from devkit.cluster import (
    PARTS,
    SERVICES,
    Cluster,
    create_postgres_databases,
    drop_postgres_databases,
    postgres_urls,
)
from devkit.soak import checks
from devkit.soak.workload import (
    Api,
    Holder,
    Recorder,
    StepFailed,
    Tokens,
    Worker,
    World,
    hospital_books,
    make_pin,
)


@dataclass
class SoakConfig:
    seconds: float = 600.0
    seed: int = 20261127
    workers: int = 8
    warmup: float | None = None  # default: 10 % of the run, 5-60 s
    holders: int | None = None  # default: enough for the run
    replicas: int = 1
    pg_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    redis_url: str | None = "redis://127.0.0.1:6379/0"
    token_lifetime: tuple[float, float] = (15.0, 45.0)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def warmup_seconds(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return min(60.0, max(5.0, self.seconds * 0.1))

    @property
    def holder_count(self) -> int:
        return self.holders if self.holders is not None else max(80, int(self.seconds * 2))


def redis_reachable(url: str) -> bool:
    """True if something answers PING at the Redis URL's host and port."""
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def synthetic_holders(count: int, seed: int) -> list[dict[str, Any]]:
    """The run's holders: valid synthetic rows (``identity.loader.synth``) for the seed."""
    from identity.loader.synth import holders  # devkit seeds what it drives, as the bench does

    return list(holders(count, seed=seed))


async def _import_holders(api: Api, ops: dict[str, str], rows: list[dict[str, Any]]) -> int:
    created = 0
    for start in range(0, len(rows), 500):
        body = await api.call(
            "setup: import holders",
            "POST",
            "/v1/admin/holders",
            expect=200,
            json={"holders": rows[start : start + 500]},
            headers=ops,
        )
        if body["rejected"]:
            raise RuntimeError(f"holder import rejected rows: {body['rejected'][:3]}")
        created += int(body["created"]) + int(body["updated"])
    return created


async def _wait_accounts(cluster: Cluster, count: int, timeout: float = 300.0) -> None:
    """Until settlement has opened ``count`` holders' accounts from identity's feed."""
    conn = await asyncpg.connect(_plain(cluster.db_urls["settlement"]))
    try:
        deadline = time.monotonic() + timeout
        while (await conn.fetchval("SELECT count(*) FROM holder")) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("settlement did not open the holders' accounts in time")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def _pids(cluster: Cluster) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in cluster.procs.items()}


async def ledger_rows(conn: asyncpg.Connection) -> list[checks.TxLegs]:
    """Every ledger transaction's debits, credits and legs (a transaction without legs too)."""
    rows = await conn.fetch(
        """
        SELECT t.id,
               coalesce(sum(e.amount_fen) FILTER (WHERE e.amount_fen > 0), 0) AS debits,
               coalesce(-sum(e.amount_fen) FILTER (WHERE e.amount_fen < 0), 0) AS credits,
               count(e.id) AS legs
        FROM ledger_tx t LEFT JOIN ledger_entry e ON e.tx_id = t.id
        GROUP BY t.id
        """
    )
    return [
        checks.TxLegs(r["id"], int(r["debits"]), int(r["credits"]), int(r["legs"])) for r in rows
    ]


async def stored_objects(conn: asyncpg.Connection, kind: str) -> list[checks.Stored]:
    """Every settlement (``kind="settlement"``) or refund, with its count of ledger transactions."""
    table, ref = ("settlement", "quote_id") if kind == "settlement" else ("refund", "settlement_id")
    rows = await conn.fetch(
        f"SELECT o.id, o.{ref} AS ref, (SELECT count(*) FROM ledger_tx t "  # noqa: S608
        f"WHERE t.kind = $1 AND t.ref = o.id) AS txs FROM {table} o",
        kind,
    )
    return [checks.Stored(r["id"], r["ref"], int(r["txs"])) for r in rows]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _drive(cluster: Cluster, cfg: SoakConfig) -> dict[str, Any]:
    var = cluster.var_dir
    clients = json.loads((var / "demo-clients.json").read_text())
    with_secret = [c for c in clients if c.get("client_secret")]
    apps = [c for c in with_secret if c["kind"] == "partner_app"]
    hospitals = [c for c in with_secret if c["kind"] == "hospital"]
    scanner = next(c for c in with_secret if c["kind"] == "scanner")
    ops_client = next(c for c in with_secret if c["kind"] == "ops")
    rng = random.Random(cfg.seed)
    rows = synthetic_holders(cfg.holder_count, cfg.seed)
    fresh = []
    for row in rows:
        local = [h for h in hospitals if h["region_code"] == row["region_code"]]
        if not local or rng.random() < 0.15:  # no hospital at home, or treated elsewhere
            city = rng.choice(sorted({h["region_code"] for h in hospitals}))
            local = [h for h in hospitals if h["region_code"] == city]
        details = {k: row[k] for k in ("name", "id_number", "card_number", "phone")}
        fresh.append(
            Holder(
                details,
                row["region_code"],
                make_pin(rng, row["id_number"]),
                local,
                rng.choice(apps),
            )
        )
    fresh.reverse()  # popped from the end: the first rows first

    rec = Recorder()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=cfg.workers * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        setup_rec = Recorder()
        setup_api = Api(http, cluster.url("gateway"), setup_rec)
        setup_tokens = Tokens(setup_api, rng, (3600.0, 3600.0))
        ops = await setup_tokens.auth(ops_client)
        t0 = time.monotonic()
        await _import_holders(setup_api, ops, rows)
        await _wait_accounts(cluster, len(rows))
        setup_s = time.monotonic() - t0

        api = Api(http, cluster.url("gateway"), rec)
        world = World(
            api,
            Tokens(api, random.Random(cfg.seed + 1), cfg.token_lifetime),
            hospitals,
            scanner,
            ops_client,
            fresh,
        )
        pids = _pids(cluster)
        cpu0 = {n: cpu_seconds([p]) for n, p in pids.items()}
        rss_series: dict[str, list[tuple[float, int]]] = {n: [] for n in pids}
        rss_start: dict[str, int] = {}
        began = time.monotonic()
        deadline = began + cfg.seconds

        async def sample_rss() -> None:
            await asyncio.sleep(cfg.warmup_seconds)
            rss_start.update({n: checks.rss_kib(p) for n, p in pids.items()})
            while time.monotonic() < deadline:
                for n, p in pids.items():
                    rss_series[n].append((round(time.monotonic() - began, 1), checks.rss_kib(p)))
                await asyncio.sleep(5.0)

        sampler = asyncio.create_task(sample_rss())
        await asyncio.gather(
            *(Worker(world, i, cfg.seed).run(deadline) for i in range(cfg.workers))
        )
        elapsed = time.monotonic() - began
        await sampler
        rss_end = {n: checks.rss_kib(p) for n, p in pids.items()}
        cpu = {n: cpu_seconds([p]) - cpu0[n] for n, p in pids.items()}

        # -- verdicts, with the cluster still up ---------------------------------------------
        ops = await world.tokens.auth(ops_client)
        ledger_check = await setup_api.call(
            "check: ledger", "GET", "/v1/admin/ledger/check", expect=200, headers=ops
        )
        recon: list[dict[str, Any]] = []
        by_id = {h["client_id"]: h for h in hospitals}
        for (hid, day), book in sorted(hospital_books(world.settled).items()):
            try:
                answer = await setup_api.call(
                    "check: reconciliation",
                    "POST",
                    "/v1/reconciliation/checks",
                    expect=200,
                    json={
                        "date": day.isoformat(),
                        **{
                            k: (
                                v
                                if k in ("count", "settlement_ids")
                                else f"{v // 100}.{v % 100:02d}"
                            )
                            for k, v in book.items()
                        },
                    },
                    headers=await world.tokens.auth(by_id[hid]),
                )
                match, diffs = bool(answer["match"]), answer["differences"][:5]
            except StepFailed as exc:
                match, diffs = False, [str(exc)]
            recon.append(
                {
                    "hospital": hid,
                    "date": day.isoformat(),
                    "count": book["count"],
                    "match": match,
                    "differences": diffs,
                }
            )

    conn = await asyncpg.connect(_plain(cluster.db_urls["settlement"]))
    try:
        tx_rows = await ledger_rows(conn)
        stored_settlements = await stored_objects(conn, "settlement")
        stored_refunds = await stored_objects(conn, "refund")
    finally:
        await conn.close()

    rss = [checks.Rss(n, rss_start[n], rss_end[n]) for n in pids]
    statuses = {k: dict(v) for k, v in rec.statuses.items()}
    verdicts = {
        "ledger check (GET /v1/admin/ledger/check)": []
        if ledger_check.get("balanced") is True
        else [json.dumps(ledger_check)],
        "PostgreSQL: each transaction's debits = credits": checks.unbalanced_transactions(tx_rows),
        "acknowledged settlements stored exactly once": checks.acknowledged_exactly_once(
            "settlement", rec.settlement_acks, stored_settlements, uncertain=rec.lost_settles
        ),
        "acknowledged refunds stored exactly once": checks.acknowledged_exactly_once(
            "refund", rec.refund_acks, stored_refunds, uncertain=rec.lost_refunds
        ),
        "hospitals' books match reconciliation": [
            f"{r['hospital']} {r['date']}: {r['differences']}" for r in recon if not r["match"]
        ],
        "no 5xx, no request unanswered": checks.server_errors(statuses),
        "same key, same answer (client retries)": list(rec.contract_problems),
        "RSS flat": checks.memory_growth(rss),
    }
    kinds = []
    for kind in sorted(rec.latencies):
        lat = rec.latencies[kind]
        kinds.append(
            {
                "kind": kind,
                "count": len(lat),
                "per_s": len(lat) / elapsed,
                "statuses": {str(k): v for k, v in sorted(statuses[kind].items())},
                "p50_ms": statistics.median(lat) * 1000,
                "p95_ms": _percentile(lat, 0.95) * 1000,
            }
        )
    return {
        "config": {
            "seconds": cfg.seconds,
            "seed": cfg.seed,
            "workers": cfg.workers,
            "warmup_s": cfg.warmup_seconds,
            "holders": len(rows),
            "replicas": cfg.replicas,
            "redis": bool(cluster.extra_env.get("GATEWAY_REDIS_URL")),
        },
        "holders_import_s": round(setup_s, 1),
        "elapsed_s": round(elapsed, 1),
        "operations": kinds,
        "requests": sum(k["count"] for k in kinds),
        "onboarded": len(world.ready),
        "settlements_acknowledged": len({a.object_id for a in rec.settlement_acks}),
        "refunds_acknowledged": len({a.object_id for a in rec.refund_acks}),
        "settlements_stored": len(stored_settlements),
        "refunds_stored": len(stored_refunds),
        "ledger_transactions": len(tx_rows),
        "ledger_check": ledger_check,
        "reconciliation_checks": recon,
        "unexpected_statuses": rec.unexpected,
        "processes": [
            {
                "process": s.process,
                "rss_start_kib": s.start_kib,
                "rss_end_kib": s.end_kib,
                "growth_kib": s.growth_kib,
                "allowed_kib": s.allowed_kib,
                "rss_max_kib": max([v for _, v in rss_series[s.process]] + [s.end_kib]),
                "cpu_s": round(cpu[s.process], 1),
                "rss_series": rss_series[s.process],
            }
            for s in rss
        ],
        "verdicts": [{"check": k, "ok": not v, "problems": v[:20]} for k, v in verdicts.items()],
        "ok": not any(verdicts.values()),
    }


def run(cfg: SoakConfig) -> dict[str, Any]:
    """Start a cluster, soak it for ``cfg.seconds``, check; the report (``report["ok"]``)."""
    var_dir = Path(tempfile.mkdtemp(prefix="essc-soak-"))
    urls = postgres_urls(cfg.pg_url, prefix=f"essc_soak{os.getpid()}{secrets.token_hex(2)}")
    env = {
        # The e-SSC's own defaults otherwise (rate limits included): the soak is production-like.
        # The feeds polled briskly: the holders imported just before the traffic open their
        # accounts in a second or two instead of after the idle backoff (up to 5 s).
        "SETTLEMENT_EVENT_POLL_SECONDS": "0.2",
        "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.5",
        "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
        **cfg.extra_env,
    }
    if cfg.redis_url and redis_reachable(cfg.redis_url):
        env.update({f"{p.upper()}_REDIS_URL": cfg.redis_url for p in PARTS})
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 1)
        mark = now

    create_postgres_databases(urls, drop_first=True)
    cluster = Cluster.on_free_ports(
        var_dir,
        urls,
        environment="test",
        extra_env=env,
        replicas={svc: cfg.replicas for svc in SERVICES},
    )
    try:
        cluster.migrate()
        lap("databases and migrations")
        # The seeds run while the other parts boot; identity starts after its own seed, which
        # writes into identity's key directory too.
        cluster.start(["gateway", "issuance", "settlement"])
        clients, holders = var_dir / "demo-clients.json", var_dir / "demo-holders.json"
        cluster.run_clis(
            ("identity", "seed-demo", "--out", str(clients), "--holders-out", str(holders),
             "--holders", "0"),
            ("settlement", "seed-demo"),
        )  # fmt: skip
        cluster.start(["identity"])
        cluster.wait_ready(timeout=90)
        lap("seeds and start")
        report = asyncio.run(_drive(cluster, cfg))
        lap("holders, traffic and checks")
        report["logs"] = str(var_dir / "logs")
        report["phases_s"] = phases
        return report
    finally:
        cluster.stop()
        drop_postgres_databases(urls)
