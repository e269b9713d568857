"""What a bench run costs PostgreSQL, per service database, robust to other users of the server.

- :func:`backend_pids`: the server processes serving one database (their CPU is read from
  /proc like the services', so the database's CPU per operation can be metered too; the
  server runs on this machine).
- :func:`snapshot` / :func:`delta`: per table, tuples inserted/updated/deleted and the table's
  total size (heap + indexes + TOAST), and the database's committed transactions. These
  counters are per database, so other sessions' databases do not pollute them.
- :func:`wal_bytes`: the WAL written for one database between two LSNs, from
  ``pg_walinspect``: records whose block references name the database, plus the records
  (commits) of the same transactions. WAL is cluster-wide, so the plain LSN difference would
  count every other database on the server.

All of it is best effort: on SQLite, or without ``pg_walinspect``, the figures are absent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg


def plain_url(url: str) -> str | None:
    """``postgresql://`` form of a service's SQLAlchemy URL; None for anything else (SQLite)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return None


async def _with(url: str, fn: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def backend_pids(url: str) -> list[int]:
    """PIDs of the server processes connected to the database of ``url`` (not this probe)."""
    plain = plain_url(url)
    if plain is None:
        return []

    async def q(conn: asyncpg.Connection) -> list[int]:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [int(r["pid"]) for r in rows]

    result: list[int] = asyncio.run(_with(plain, q))
    return result


def current_lsn(url: str) -> str | None:
    plain = plain_url(url)
    if plain is None:
        return None

    async def q(conn: asyncpg.Connection) -> str:
        return str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))

    result: str = asyncio.run(_with(plain, q))
    return result


STATS_LAG_SECONDS = 11.0
"""A backend reports its table counters within PostgreSQL's idle interval (10 s) of idling."""


@dataclass
class Snapshot:
    lsn: str
    oid: int
    xact_commit: int
    tables: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)
    """table -> (inserted, updated, deleted, total bytes, live rows)"""


async def _snapshot(conn: asyncpg.Connection) -> Snapshot:
    # Statistics are flushed by each backend within about a second of going idle.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    db = await conn.fetchrow(
        "SELECT d.oid, s.xact_commit, pg_current_wal_lsn()::text AS lsn FROM pg_database d "
        "JOIN pg_stat_database s ON s.datid = d.oid WHERE d.datname = current_database()"
    )
    rows = await conn.fetch(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup, "
        "pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables"
    )
    return Snapshot(
        lsn=str(db["lsn"]),
        oid=int(db["oid"]),
        xact_commit=int(db["xact_commit"]),
        tables={
            str(r["relname"]): (
                int(r["n_tup_ins"]),
                int(r["n_tup_upd"]),
                int(r["n_tup_del"]),
                int(r["bytes"]),
                int(r["n_live_tup"]),
            )
            for r in rows
        },
    )


def snapshot(url: str) -> Snapshot | None:
    plain = plain_url(url)
    if plain is None:
        return None
    result: Snapshot = asyncio.run(_with(plain, _snapshot))
    return result


@dataclass
class Delta:
    """Per-operation figures between two snapshots of one database."""

    commits: float
    tables: dict[str, dict[str, float]]
    """table -> {"ins", "upd", "del", "bytes"} per operation (only tables that changed)"""
    wal_bytes: float | None = None
    wal_fpi_bytes: float | None = None

    @property
    def writes(self) -> float:
        """Rows inserted + updated + deleted per operation."""
        return sum(t["ins"] + t["upd"] + t["del"] for t in self.tables.values())

    @property
    def bytes(self) -> float:
        return sum(t["bytes"] for t in self.tables.values())

    def as_extra(self, prefix: str) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {
            f"{prefix}:commits": round(self.commits, 2),
            f"{prefix}:row_writes": round(self.writes, 2),
            f"{prefix}:bytes": round(self.bytes, 1),
        }
        if self.wal_bytes is not None:
            out[f"{prefix}:wal_bytes"] = round(self.wal_bytes, 1)
        if self.wal_fpi_bytes is not None:
            out[f"{prefix}:wal_fpi_bytes"] = round(self.wal_fpi_bytes, 1)
        for name, t in sorted(self.tables.items()):
            out[f"{prefix}:table:{name}"] = (
                f"ins {t['ins']:.2f} upd {t['upd']:.2f} del {t['del']:.2f} bytes {t['bytes']:.0f}"
            )
        return out


def delta(before: Snapshot, after: Snapshot, ops: int) -> Delta:
    n = max(ops, 1)
    tables: dict[str, dict[str, float]] = {}
    for name, a in after.tables.items():
        b = before.tables.get(name, (0, 0, 0, 0, 0))
        d = [a[i] - b[i] for i in range(4)]
        if any(d):
            tables[name] = {
                "ins": d[0] / n,
                "upd": d[1] / n,
                "del": d[2] / n,
                "bytes": d[3] / n,
            }
    return Delta(commits=(after.xact_commit - before.xact_commit) / n, tables=tables)


_WAL_SQL = """
WITH r AS (
    SELECT xid, record_length, fpi_length, block_ref
    FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
), mine AS (
    SELECT DISTINCT xid FROM r WHERE block_ref ~ $3 AND xid::text <> '0'
)
SELECT coalesce(sum(record_length), 0) AS bytes, coalesce(sum(fpi_length), 0) AS fpi
FROM r
WHERE block_ref ~ $3 OR (coalesce(block_ref, '') = '' AND xid IN (SELECT xid FROM mine))
"""


@contextmanager
def wal_kept(url: str) -> Iterator[None]:
    """Keep the server's WAL from here to the end of the block (a physical replication slot,
    reserved at once and dropped on the way out): a busy server's checkpoints would otherwise
    recycle the segments before :func:`wal_bytes` reads them. Slots left by a bench that died
    (``essc_bench_<pid>`` of a process that is gone) are dropped first."""
    plain = plain_url(url)
    if plain is None:
        yield
        return
    name = f"essc_bench_{os.getpid()}"

    running = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}

    async def create(conn: asyncpg.Connection) -> None:
        for row in await conn.fetch(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'essc_bench_%'"
        ):
            pid = int(str(row["slot_name"]).rsplit("_", 1)[1])
            if pid == os.getpid() or pid not in running:
                await conn.execute("SELECT pg_drop_replication_slot($1)", row["slot_name"])
        await conn.execute("SELECT pg_create_physical_replication_slot($1, true)", name)

    async def drop(conn: asyncpg.Connection) -> None:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = $1",
            name,
        )

    try:
        asyncio.run(_with(plain, create))
    except asyncpg.PostgresError as exc:  # e.g. max_replication_slots reached
        print(f"bench: no replication slot ({exc}); the WAL may be recycled", flush=True)
        yield
        return
    try:
        yield
    finally:
        asyncio.run(_with(plain, drop))


def wal_bytes(
    url: str, start: str, end: str, oids: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """WAL bytes (and the full-page images among them) per database oid between two LSNs.

    Needs superuser (or pg_read_server_files) and the ``pg_walinspect`` extension, created in
    the database of ``url``; an empty dict when that is not possible.
    """
    plain = plain_url(url)
    if plain is None:
        return {}

    async def q(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        out = {}
        for name, oid in oids.items():
            row = await conn.fetchrow(_WAL_SQL, start, end, f"/{oid}/")
            out[name] = (int(row["bytes"]), int(row["fpi"]))
        return out

    try:
        result: dict[str, tuple[int, int]] = asyncio.run(_with(plain, q))
    except (asyncpg.PostgresError, OSError) as exc:
        # e.g. the WAL of the window already recycled by a checkpoint: the figure is absent.
        print(f"bench: WAL not measured: {exc}", flush=True)
        return {}
    return result
