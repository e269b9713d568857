"""``make run``: migrate, seed the demo data and run the four parts until Ctrl-C.

The embedded default keeps one SQLite file per service under ``var/``. Set
``ESSC_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres`` to run every
service on its own PostgreSQL database (``essc_identity``, ...), or any
``<SERVICE>_DATABASE_URL`` to point one service elsewhere. ``ESSC_PORT_BASE=N`` (or
``--port-base N``) moves the four ports from 8000-8003 to N..N+3.

Ctrl-C (or SIGTERM) at any moment stops whatever was started: each service gets SIGTERM,
finishes in-flight requests and exits; the line ``e-SSC: stopped (...)`` gives their exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devkit.cluster import (
    DEFAULT_PORTS,
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


def ports(base: int | None) -> dict[str, int]:
    """gateway, identity, issuance, settlement on ``base``..``base+3`` (default 8000-8003)."""
    if base is None:
        return dict(DEFAULT_PORTS)
    if not 1 <= base <= 65535 - len(PARTS) + 1:
        raise SystemExit(f"port base {base} out of range")
    return {part: base + i for i, part in enumerate(PARTS)}


def setup_commands(var_dir: Path) -> dict[str, list[list[str]]]:
    """Per service: its migrations, then its idempotent demo seed (issuance has none: its
    e-cards come through the API once everything runs)."""
    return {
        "identity": [
            ["migrate"],
            [
                "seed-demo",
                "--out",
                str(var_dir / "demo-clients.json"),
                "--holders-out",
                str(var_dir / "demo-holders.json"),
            ],
        ],
        "issuance": [["migrate"]],
        "settlement": [["migrate"], ["seed-demo"]],
    }


def set_up(cluster: Cluster, commands: dict[str, list[list[str]]]) -> None:
    """Run each service's commands (one interpreter per service, the services at once: their
    databases are separate); print what they say; exit with their output if one fails."""
    procs = {
        svc: subprocess.Popen(
            [sys.executable, "-m", "devkit.servicecli", svc, json.dumps(argvs)],
            env=cluster.env_for(svc),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for svc, argvs in commands.items()
    }
    try:
        outputs = {svc: proc.communicate()[0] for svc, proc in procs.items()}
    except BaseException:  # Ctrl-C or SIGTERM: leave no command running behind us
        for proc in procs.values():
            proc.terminate()
            proc.wait()
        raise
    failed = []
    for svc, proc in procs.items():
        out = outputs[svc].strip()
        if proc.returncode != 0:
            failed.append(f"{svc}: setting up failed ({proc.returncode}):\n{out}")
        elif out:
            print(out, flush=True)
    if failed:
        print("\n".join(failed), file=sys.stderr)
        raise SystemExit(1)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
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
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ["ESSC_PORT_BASE"]) if os.environ.get("ESSC_PORT_BASE") else None,
        help="gateway on this port, identity, issuance and settlement on the next three "
        "(default: $ESSC_PORT_BASE, else 8000)",
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
        ports=ports(args.port_base),
        extra_env=extra_env,
        replicas={svc: args.replicas for svc in SERVICES},
    )
    # Ctrl-C and SIGTERM stop whatever was started (the `finally` below). Set explicitly: a
    # shell starting `make run &` from a script hands it SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    failed = False
    try:
        print("e-SSC: applying migrations, seeding demo data ...", flush=True)
        set_up(cluster, setup_commands(var_dir))
        print("e-SSC: starting gateway, identity, issuance, settlement ...", flush=True)
        cluster.start()
        try:
            cluster.wait_ready(timeout=90)
        except RuntimeError as exc:
            print(f"e-SSC: failed to start: {exc}", file=sys.stderr)
            return 1
        post_start = _post_start_hook()
        if post_start is not None:
            post_start(cluster)
        print(banner(cluster, args.port_base), flush=True)
        while not failed:
            for name, proc in list(cluster.procs.items()):
                if proc.popen.poll() is not None:
                    print(
                        f"e-SSC: {name} exited unexpectedly:\n{cluster.tail(name)}", file=sys.stderr
                    )
                    failed = True
            time.sleep(0.3)
    except KeyboardInterrupt:
        if not cluster.procs:
            print("\ne-SSC: interrupted before the services started", flush=True)
    finally:
        # A second Ctrl-C must not cut the stop short and leave services behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster.procs:
            print("\ne-SSC: stopping ...", flush=True)
            codes = cluster.stop()
            print("e-SSC: stopped (" + ", ".join(f"{k}={v}" for k, v in codes.items()) + ")")
            # -SIGTERM: stopped while still starting, before it could handle the signal.
            failed = failed or any(code not in (0, -signal.SIGTERM) for code in codes.values())
    return 1 if failed else 0


def banner(cluster: Cluster, port_base: int | None) -> str:
    """What is running where, and how to follow the README's walkthrough against it."""
    gw = cluster.url("gateway")
    var_dir = cluster.var_dir
    hint = "" if port_base is None else f"\n  (for the README's steps: export ESSC_GATEWAY={gw})"
    replicas = _replica_lines(cluster)
    return f"""
e-SSC is running (logs in {var_dir}/logs, data in {var_dir}).
  Public API (gateway) : {gw}{hint}
  API docs             : {gw}/docs   (OpenAPI: {gw}/openapi.json)
  Service docs         : {cluster.url("identity")}/docs (identity), {cluster.url("issuance")}/docs
                         (issuance), {cluster.url("settlement")}/docs (settlement)
  Demo clients         : {var_dir}/demo-clients.json (holders: demo-holders.json){replicas}
  Try it               : README.md, "Quick start" (curl and jq, in another terminal)
Press Ctrl-C to stop."""


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
