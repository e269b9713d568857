"""``make run``: migrate, seed the demo data and run the four parts until Ctrl-C.

The embedded default keeps one SQLite file per service under ``var/``. Set
``ESSC_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres`` to run every
service on its own PostgreSQL database (``essc_identity``, ...), or any
``<SERVICE>_DATABASE_URL`` to point one service elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devkit.cluster import (
    PARTS,
    SERVICES,
    Cluster,
    create_postgres_databases,
    postgres_urls,
    sqlite_urls,
)


def database_urls(var_dir: Path) -> dict[str, str]:
    """Per-service URLs: ``<SERVICE>_DATABASE_URL``, else PostgreSQL if asked, else SQLite."""
    pg = os.environ.get("ESSC_POSTGRES_URL")
    urls = postgres_urls(pg) if pg else sqlite_urls(var_dir)
    if pg:
        create_postgres_databases(urls)
    for svc in SERVICES:
        explicit = os.environ.get(f"{svc.upper()}_DATABASE_URL")
        if explicit:
            urls[svc] = explicit
    return urls


def seed(cluster: Cluster) -> None:
    """Run each service's ``seed-demo`` command, where the service has one (idempotent)."""
    for svc in SERVICES:
        result = cluster.run_cli(svc, "--help", check=False)
        if "seed-demo" in result.stdout:
            out = cluster.run_cli(svc, "seed-demo", check=False)
            if out.returncode != 0:
                print(f"{svc}: seeding failed:\n{out.stdout}{out.stderr}", file=sys.stderr)
                raise SystemExit(1)
            if out.stdout.strip():
                print(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m devkit.run``."""
    parser = argparse.ArgumentParser(prog="python -m devkit.run", description=__doc__)
    parser.add_argument("--var", default="var", help="data directory (default: var)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="processes of identity, issuance and settlement each (more than 1 runs on "
        "PostgreSQL and Redis; the gateway balances across them)",
    )
    args = parser.parse_args(argv)
    var_dir = Path(args.var).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    extra_env: dict[str, str] = {}
    if args.replicas > 1:
        # State that must hold across replicas (one-time QR codes, idempotency keys, rate
        # limits, revocations, webhook delivery) lives in PostgreSQL and Redis, never in memory.
        os.environ.setdefault("ESSC_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        redis = os.environ.get("ESSC_REDIS_URL", "redis://127.0.0.1:6379/0")
        extra_env = {f"{p.upper()}_REDIS_URL": redis for p in PARTS}
    cluster = Cluster(
        var_dir=var_dir,
        db_urls=database_urls(var_dir),
        extra_env=extra_env,
        replicas={svc: args.replicas for svc in SERVICES},
    )
    print("e-SSC: applying migrations ...", flush=True)
    cluster.migrate()
    seed(cluster)
    print("e-SSC: starting gateway, identity, issuance, settlement ...", flush=True)
    cluster.start()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.wait_ready(timeout=90)
    except RuntimeError as exc:
        print(f"e-SSC: failed to start: {exc}", file=sys.stderr)
        cluster.stop()
        return 1
    post_start = _post_start_hook()
    if post_start is not None:
        post_start(cluster)
    gw = cluster.url("gateway")
    print(
        f"""
e-SSC is running (logs in {var_dir}/logs, data in {var_dir}).
  Public API (gateway) : {gw}
  API docs             : {gw}/docs   (OpenAPI: {gw}/openapi.json)
  Service docs         : {cluster.url("identity")}/docs (identity), {cluster.url("issuance")}/docs
                         (issuance), {cluster.url("settlement")}/docs (settlement)
  Demo clients         : {var_dir}/demo-clients.json{_replica_lines(cluster)}
Press Ctrl-C to stop.""",
        flush=True,
    )
    exited: set[str] = set()
    try:
        while not stopping:
            # Every process, replicas included; the cluster stops once a part has none left
            # (one replica dying is what REPLICAS=2 is for: the others keep serving).
            for name, proc in list(cluster.procs.items()):
                if name not in exited and proc.popen.poll() is not None:
                    exited.add(name)
                    print(
                        f"e-SSC: {name} exited unexpectedly ({proc.popen.returncode}):\n"
                        f"{cluster.tail(name)}",
                        file=sys.stderr,
                    )
            if any(set(cluster.processes(part)) <= exited for part in PARTS):
                stopping = True
            time.sleep(0.3)
    finally:
        print("\ne-SSC: stopping ...", flush=True)
        codes = cluster.stop()
        print("e-SSC: stopped (" + ", ".join(f"{k}={v}" for k, v in codes.items()) + ")")
    return 0


def _replica_lines(cluster: Cluster) -> str:
    """The further replicas' addresses, when there are any (the gateway balances over them)."""
    extra = [
        f"{name} {cluster.url(name)}" for part in SERVICES for name in cluster.processes(part)[1:]
    ]
    return "\n  Further replicas     : " + ", ".join(extra) if extra else ""


def _post_start_hook() -> Callable[[Cluster], None] | None:
    """``devkit.demo.seed_after_start`` once that module exists (demo data made through the API)."""
    try:
        demo = importlib.import_module("devkit.demo")
    except ImportError:
        return None
    hook: Callable[[Cluster], None] | None = getattr(demo, "seed_after_start", None)
    return hook


if __name__ == "__main__":
    raise SystemExit(main())
