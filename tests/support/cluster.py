"""A real four-process cluster on PostgreSQL for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from devkit.cluster import SERVICES, Cluster
from support.pg import async_url, create_databases, drop_databases

# Each test cluster's pools stay small: PostgreSQL here allows 100 connections, and a package
# cluster, a module's cluster (up to seven processes with replicas) and the test's own
# connections can be open at once. Requests wait for a pooled connection instead.
_FRUGAL_POOLS = {
    f"{svc.upper()}_{name}": value
    for svc in SERVICES
    for name, value in (("DB_POOL_SIZE", "6"), ("DB_MAX_OVERFLOW", "4"))
}


@contextlib.contextmanager
def pg_cluster(
    tmp: Path,
    run_id: str,
    *,
    extra_env: dict[str, str] | None = None,
    start: bool = True,
    before_start: Callable[[Cluster], None] | None = None,
    replicas: dict[str, int] | None = None,
) -> Iterator[Cluster]:
    """Fresh databases, migrations, four uvicorn processes (more with ``replicas``) on free
    ports; torn down after.

    ``before_start`` runs after the migrations, before any process starts: the place to
    put something between the parts (a fault proxy) and point them at it (``extra_env``).
    """
    names = {svc: f"essc_{run_id}_{svc}" for svc in SERVICES}
    asyncio.run(create_databases(names.values()))
    cluster = Cluster.on_free_ports(
        tmp,
        {svc: async_url(name) for svc, name in names.items()},
        extra_env={**_FRUGAL_POOLS, **(extra_env or {})},
        environment="test",
        replicas=dict(replicas or {}),
    )
    try:
        cluster.migrate()
        if before_start is not None:
            before_start(cluster)
        if start:
            cluster.start()
            cluster.wait_ready(timeout=60)
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(drop_databases(names.values()))
