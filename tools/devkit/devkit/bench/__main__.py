"""``python -m devkit.bench``: start a cluster, run the scenarios, print the table, write JSON.

Scenarios run against real processes on PostgreSQL when ``ESSC_BENCH_POSTGRES_URL``
(default: the test server) is reachable, else on the embedded SQLite default.
Figures are for the record: a timing is never a test assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devkit.bench import forwarding, issuance, scaling, settlement
from devkit.bench import identity as identity_bench
from devkit.bench.core import Row, render_table, rows_as_json
from devkit.cluster import (
    Cluster,
    create_postgres_databases,
    drop_postgres_databases,
    postgres_urls,
    sqlite_urls,
)

Scenario = Callable[..., list[Row]]
SCENARIOS: dict[str, Scenario] = {
    "forwarding": forwarding.run,
    "issuance": issuance.run,
    "scaling": scaling.run,
    "settle-direct": settlement.run_direct,
    "journey": settlement.run_journey,
    # Last: the holders it loads are followed by issuance and settlement through identity's
    # event feed for minutes afterwards, which would be metered as the others' CPU.
    "identity": identity_bench.run,
}


def _pg_url() -> str | None:
    url = os.environ.get(
        "ESSC_BENCH_POSTGRES_URL",
        os.environ.get("ESSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    try:
        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(url, timeout=2)
            await conn.close()

        asyncio.run(probe())
    except Exception:
        return None
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.bench", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    chosen = args.only or list(SCENARIOS)
    pg = _pg_url()
    var_dir = Path(tempfile.mkdtemp(prefix="essc-bench-"))
    if pg:
        urls = postgres_urls(pg, prefix=f"essc_bench{os.getpid()}")
        create_postgres_databases(urls, drop_first=True)
    else:
        urls = sqlite_urls(var_dir)
    cluster = Cluster.on_free_ports(
        var_dir,
        urls,
        environment="test",
        # Budgets sized for a load generator: the bench measures work, not 429s.
        extra_env={
            "GATEWAY_RATE_LIMIT_CLIENT": "1000000/second",
            "GATEWAY_RATE_LIMIT_PUBLIC": "1000000/second",
            # The identity scenario drives verifications from one client at full speed.
            "IDENTITY_VERIFICATION_RATE_PER_CLIENT": "1000000/minute",
            "IDENTITY_VERIFICATION_RATE_PER_ID_NUMBER": "1000000/minute",
            "ISSUANCE_QR_RATE_LIMIT": "1000000/minute",
            "ISSUANCE_LOG_REQUESTS": "false",
        },
    )
    rows: list[Row] = []
    try:
        cluster.migrate()
        cluster.start()
        cluster.wait_ready()
        for name in chosen:
            print(f"bench: {name} ...", flush=True)
            rows.extend(SCENARIOS[name](cluster, duration=args.duration))
    finally:
        cluster.stop()
        if pg:
            drop_postgres_databases(urls)
    table = render_table(rows)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    doc = {
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "database": "postgresql" if pg else "sqlite",
        "rows": rows_as_json(rows),
    }
    for name in (f"bench-{stamp}.json", "latest.json"):
        (out / name).write_text(json.dumps(doc, indent=2))
    (out / "latest.md").write_text(table + "\n")
    print(f"bench: wrote {out}/bench-{stamp}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
