"""Identity: bulk load rate, verification lookup latency at 10,000 and 1,000,000 holders,
token issuance per second (private_key_jwt), all against the real identity process.

Holders come from ``python -m identity generate-holders`` and are loaded with
``python -m identity load-holders`` (COPY on PostgreSQL). A "lookup" is a
``POST /v1/verifications`` whose phone does not match: the full matching path
(blind-index lookup, decryptions, comparisons) without the OTP write, called
directly on identity with an internal token signed by the gateway's key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from devkit.bench.core import Row, cpu_meter
from devkit.cluster import Cluster
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyStore

SMALL = 10_000
LARGE = int(os.environ.get("ESSC_BENCH_HOLDERS", "1000000"))
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _internal(cluster: Cluster, client_id: str, kind: ClientKind, scope: str) -> str:
    key = KeyStore(cluster.var_dir / "keys" / "gateway").load().signing_key("internal")
    now = int(time.time())
    claims = InternalTokenClaims(
        iss="urn:essc:gateway",
        sub=client_id,
        aud="urn:essc:identity",
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(12),
        client_id=client_id,
        kind=kind,
        scope=scope,
    )
    return "Bearer " + sign_token(INTERNAL, claims, key)


def _read(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def _read_every(path: Path, step: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for i, line in enumerate(fh) if i % step == 0]


async def _timed_posts(
    url: str, bodies: list[dict[str, Any]], headers: dict[str, str], concurrency: int
) -> tuple[list[float], float, int]:
    """Latencies (ms), wall seconds and the count of unexpected statuses."""
    latencies: list[float] = []
    errors = 0
    queue = list(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while queue:
            body = queue.pop()
            start = time.perf_counter()
            kwargs: dict[str, Any] = {"data": body["form"]} if "form" in body else {"json": body}
            async with session.post(url, headers=headers, **kwargs) as resp:
                await resp.read()
                if resp.status >= 500 or resp.status == 429:
                    errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

    async with aiohttp.ClientSession() as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return latencies, wall, errors


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _lookups(cluster: Cluster, rows: list[dict[str, Any]], n: int, label: str) -> Row:
    rng = random.Random(7)
    sample = [rng.choice(rows) for _ in range(n)]
    bodies = [
        {k: r[k] for k in ("name", "id_number", "card_number")} | {"phone": "13000000000"}
        for r in sample
    ]
    headers = {
        "Authorization": _internal(cluster, "app_bench", ClientKind.PARTNER_APP, "ecard:issue")
    }
    url = cluster.url("identity") + "/v1/verifications"
    pid = cluster.procs["identity"].popen.pid
    asyncio.run(_timed_posts(url, bodies[:200], headers, 1))  # warm-up
    with cpu_meter([pid]) as cpu:
        lat, wall, errors = asyncio.run(_timed_posts(url, bodies, headers, 1))
    return Row(
        "identity",
        f"verification lookup at {label} holders (c=1)",
        len(lat) / wall,
        _pct(lat, 50),
        _pct(lat, 99),
        cpu[0] / len(lat) * 1e6,
        notes=f"422 mismatch path, {len(lat)} requests, errors {errors}",
    )


def _register_jwt_client(cluster: Cluster) -> tuple[str, ec.EllipticCurvePrivateKey, str]:
    import httpx

    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-256", "x": b64(nums.x), "y": b64(nums.y), "kid": "bench-1"}
    resp = httpx.post(
        cluster.url("identity") + "/v1/admin/clients",
        json={"kind": "partner_app", "name": "Bench app", "jwks": {"keys": [jwk]}},
        headers={"Authorization": _internal(cluster, "ops_bench", ClientKind.OPS, "ops")},
    )
    resp.raise_for_status()
    return resp.json()["client_id"], key, "bench-1"


def _tokens(cluster: Cluster, n: int) -> Row:
    client_id, key, kid = _register_jwt_client(cluster)
    now = int(time.time())
    forms = [
        {
            "form": {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": jwt.encode(
                    {
                        "iss": client_id,
                        "sub": client_id,
                        "aud": cluster.url("gateway"),
                        "iat": now,
                        "exp": now + 240,
                        "jti": secrets.token_urlsafe(16),
                    },
                    key,
                    algorithm="ES256",
                    headers={"kid": kid},
                ),
            }
        }
        for _ in range(n)
    ]
    url = cluster.url("identity") + "/oauth/token"
    pid = cluster.procs["identity"].popen.pid
    asyncio.run(_timed_posts(url, forms[:200], {}, 8))
    with cpu_meter([pid]) as cpu:
        lat, wall, errors = asyncio.run(_timed_posts(url, forms[200:], {}, 16))
    return Row(
        "identity",
        "token issuance, private_key_jwt (c=16)",
        len(lat) / wall,
        _pct(lat, 50),
        _pct(lat, 99),
        cpu[0] / len(lat) * 1e6,
        notes=f"{len(lat)} tokens, errors {errors}; assertion verify + jti insert + ES256 sign",
        extra={"cpu_us:identity": round(cpu[0] / len(lat) * 1e6, 1), "ops": len(lat)},
    )


def _load(cluster: Cluster, path: Path, label: str) -> Row:
    pid_hint = "python -m identity load-holders"
    start = time.perf_counter()
    out = cluster.run_cli("identity", "load-holders", str(path))
    seconds = time.perf_counter() - start
    count = sum(1 for _ in path.open(encoding="utf-8"))
    return Row(
        "identity",
        f"bulk load {label} holders",
        count / seconds,
        notes=f"{pid_hint}: {seconds:.1f} s; " + out.stdout.strip().splitlines()[0][10:80],
    )


def run(cluster: Cluster, *, duration: int) -> list[Row]:
    """Load 10k, measure lookups; load up to LARGE, measure again; token issuance.

    Issuance and settlement are stopped meanwhile: both follow identity's event feed and
    would be paging through a million ``holder.upserted`` events on identity's CPU while
    the lookups are measured. They are started again at the end.
    """
    peers = [p for p in ("issuance", "settlement") if p in cluster.procs]
    cluster.stop(peers)
    try:
        return _run(cluster, duration)
    finally:
        cluster.start(peers)
        cluster.wait_ready(peers)


def _run(cluster: Cluster, duration: int) -> list[Row]:
    work = cluster.var_dir / "bench-identity"
    work.mkdir(parents=True, exist_ok=True)
    everything = work / "holders.jsonl"
    cluster.run_cli(
        "identity", "generate-holders", str(LARGE), "--out", str(everything), "--seed", "31"
    )
    first, rest = work / "first.jsonl", work / "rest.jsonl"
    with everything.open(encoding="utf-8") as src, first.open("w") as a, rest.open("w") as b:
        for i, line in enumerate(src):
            (a if i < SMALL else b).write(line)
    rows = _read(first, SMALL)
    out = [_load(cluster, first, f"{SMALL:,}")]
    n = max(1000, duration * 200)
    small = _lookups(cluster, rows, n, f"{SMALL:,}")
    out.append(small)
    out.append(_load(cluster, rest, f"{LARGE - SMALL:,} more"))
    spread = _read_every(everything, max(1, LARGE // SMALL))  # holders from the whole table
    large = _lookups(cluster, spread, n, f"{LARGE:,}")
    if small.p50_ms and large.p50_ms:
        large.ratio, large.ratio_of = large.p50_ms / small.p50_ms, "p50 at 10k"
    out.append(large)
    out.append(_tokens(cluster, max(2000, duration * 300)))
    return out
