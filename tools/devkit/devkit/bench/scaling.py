"""The scan path with one, then two issuance replicas: throughput and CPU per scan per process.

Hospitals scan fresh codes through the gateway: alternately a payment code for settlement
(which also mints the one-use settlement token) and an identity code. The same wrk load
(-t1 -c32) runs against the cluster as started (issuance x1), then against the same
databases, keys and ports restarted with issuance x2 (the gateway spreads requests over the
replica URLs); the cluster is then restarted as it was for the scenarios that follow.

CPU is read from /proc/<pid>/stat (utime+stime) before and after, for every service process
and for the PostgreSQL server processes of issuance's database, and divided by the scans
answered. On this 2-core machine wrk, the gateway, issuance and PostgreSQL already share two
cores with one replica, so the second replica can only take CPU from the others: the row is
for the record (CPU per scan should stay flat; throughput may move a little either way). The
``cores:*`` extras say how busy each process and the whole machine were.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from devkit.bench.core import Meter, Row, WrkResult, process_groups, wrk
from devkit.bench.issuance import seed_ecard_async
from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.tokens.claims import ClientKind
from shared.tokens.keys import KeyStore
from shared.tokens.qr import QrPurpose, issue_qr_token

CARDS = 64
"""Scans spread over this many payment-enabled e-cards (one e-card row is read per scan)."""


def _script(directory: Path, codes: list[tuple[str, str]], token: str) -> Path:
    """A wrk script posting one fresh code per request: ``purpose<TAB>code`` lines."""
    codes_file = directory / "scaling-codes.txt"
    codes_file.write_text("".join(f"{p}\t{c}\n" for p, c in codes))
    script = directory / "scaling.lua"
    script.write_text(
        "local codes = {}\n"
        f'for line in io.lines("{codes_file}") do\n'
        '  local p, c = line:match("([^\\t]+)\\t(.+)")\n'
        "  codes[#codes + 1] = {p, c}\n"
        "end\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local e = codes[((i - 1) % #codes) + 1]\n"
        '  local body = \'{"qr_token":"\' .. e[2] .. \'","purpose":"\' .. e[1] .. \'"}\'\n'
        '  return wrk.format("POST", "/v1/scans", {["Content-Type"] = "application/json",\n'
        f'    ["Authorization"] = "Bearer {token}"}}, body)\n'
        "end\n"
    )
    return script


def _codes(cluster: Cluster, seqs: list[int], count: int) -> list[tuple[str, str]]:
    key = KeyStore(cluster.var_dir / "keys" / "issuance").load().signing_key("qr")
    now = int(time.time())
    out = []
    for n in range(count):
        payment = n % 2 == 0
        qr_purpose = QrPurpose.PAYMENT if payment else QrPurpose.IDENTITY
        code = issue_qr_token(key, purpose=qr_purpose, ecard_seq=seqs[n % len(seqs)], iat=now)[0]
        out.append(("settlement" if payment else "identity", code))
    return out


def _measure(cluster: Cluster, seqs: list[int], token: str, duration: int, label: str) -> Row:
    names = [n for n in cluster.procs if n.startswith(("gateway", "issuance"))]
    others = [n for n in cluster.procs if n not in names]
    procs = {n: cluster.procs[n].popen.pid for n in [*names, *others]}
    url = cluster.url("gateway") + "/v1/scans"
    with tempfile.TemporaryDirectory(prefix="essc-bench-scaling-") as tmp:
        folder = Path(tmp)
        wrk(url, duration=2, script=_script(folder, _codes(cluster, seqs, 2500 * 2), token))
        codes = _codes(cluster, seqs, 2500 * (duration + 1))
        script = _script(folder, codes, token)
        with Meter(process_groups(procs, {"issuance": cluster.db_urls["issuance"]})) as meter:
            result: WrkResult = wrk(url, duration=duration, script=script)
    scan_path = sum(meter.cpu[n] for n in names)
    return Row(
        "scaling",
        f"scan path, {label}",
        result.rps,
        result.p50_ms,
        result.p99_ms,
        scan_path / max(result.requests, 1) * 1e6,
        notes=(
            f"errors {result.errors}; CPU µs/scan {meter.note(result.requests)}; "
            f"machine {meter.machine_busy / max(meter.wall, 1e-9):.2f} of 2 cores busy"
        ),
        extra=meter.breakdown(result.requests),
    )


def run(cluster: Cluster, *, duration: int) -> list[Row]:
    """Scans with issuance x1 (the cluster as it is), then x2 (restarted), then x1 again."""
    import asyncio

    async def seed() -> list[int]:
        return [
            (await seed_ecard_async(cluster, "bench-partner", sign_level=2))[1]
            for _ in range(CARDS)
        ]

    seqs = asyncio.run(seed())
    token = access_token(
        cluster,
        client_id="bench-hospital-scan",
        kind=ClientKind.HOSPITAL,
        scope="scan",
        region_code="370200",
        level=2,
    )
    rows = [_measure(cluster, seqs, token, duration, "1 issuance replica")]
    running = list(cluster.procs)
    cluster.stop()
    two = Cluster(
        var_dir=cluster.var_dir,
        db_urls=cluster.db_urls,
        ports=dict(cluster.ports),
        extra_env=cluster.extra_env,
        environment=cluster.environment,
        log_dir=cluster.log_dir,
        replicas={"issuance": 2},
    )
    try:
        two.start()
        two.wait_ready()
        rows.append(_measure(two, seqs, token, duration, "2 issuance replicas"))
    finally:
        two.stop()
        cluster.start(running)
        cluster.wait_ready(running)
    # x1 again: brackets the x2 run, so a change of load on the shared machine shows up.
    rows.append(_measure(cluster, seqs, token, duration, "1 issuance replica, again"))
    one = [r.ops_per_s for r in (rows[0], rows[2]) if r.ops_per_s]
    if one:
        rows[1].ratio = rows[1].ops_per_s / (sum(one) / len(one))
        rows[1].ratio_of = "the two x1 runs (scans/s)"
    return rows
