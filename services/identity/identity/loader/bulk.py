"""``python -m identity load-holders FILE``: load large holder files.

On PostgreSQL: worker processes validate and encrypt rows (``loader.prepare``),
the parent COPYs each batch into a temporary staging table and moves it with one
``INSERT ... SELECT`` per table (holders, cards, card history and the
``holder.upserted`` outbox events, under the outbox's advisory lock), one
transaction per batch. New holders only: an ID number already registered, or a
card number already taken, is skipped (the admin import updates existing holders).
On SQLite the same rows go through the admin import's service in batches of 1000.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity.config import IdentitySettings
from identity.events.repository import OUTBOX_LOCK
from identity.loader import prepare
from identity.loader.files import read_rows

STAGE_COLUMNS = (
    "line",
    "holder_ref",
    "id_number_enc",
    "id_number_bidx",
    "name_enc",
    "phone_enc",
    "phone_bidx",
    "gender",
    "birth_date",
    "insured_region",
    "insurance_type",
    "card_ref",
    "card_number",
    "card_status",
    "opening_balance_fen",
)

CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS holder_stage (
    line integer, holder_ref text, id_number_enc bytea, id_number_bidx bytea, name_enc bytea,
    phone_enc bytea, phone_bidx bytea, gender text, birth_date date, insured_region text,
    insurance_type text, card_ref text, card_number text, card_status text,
    opening_balance_fen bigint
) ON COMMIT DELETE ROWS
"""

# One statement: new holders (first row per ID number and per card number wins), their
# cards, the cards' first history rows and one holder.upserted event per new holder.
MOVE = """
WITH candidates AS (
    SELECT DISTINCT ON (s.card_number) s.*
    FROM holder_stage s
    WHERE NOT EXISTS (SELECT 1 FROM card c WHERE c.card_number = s.card_number)
    ORDER BY s.card_number, s.line
), ins AS (
    INSERT INTO holder (holder_ref, id_number_enc, id_number_bidx, name_enc, phone_enc,
                        phone_bidx, gender, birth_date, insured_region, insurance_type,
                        created_at, updated_at)
    SELECT holder_ref, id_number_enc, id_number_bidx, name_enc, phone_enc, phone_bidx, gender,
           birth_date, insured_region, insurance_type, now(), now()
    FROM candidates ORDER BY line
    ON CONFLICT (id_number_bidx) DO NOTHING
    RETURNING holder_ref
), cards AS (
    INSERT INTO card (card_ref, card_number, holder_ref, region_code, status, created_at,
                      updated_at)
    SELECT c.card_ref, c.card_number, c.holder_ref, c.insured_region, c.card_status, now(), now()
    FROM candidates c JOIN ins USING (holder_ref)
    RETURNING card_ref, status
), history AS (
    INSERT INTO card_status_change (card_ref, from_status, to_status, actor, changed_at)
    SELECT card_ref, NULL, status, $1, now() FROM cards
)
INSERT INTO outbox_event (event_id, type, occurred_at, payload)
SELECT gen_random_uuid()::text, 'holder.upserted', now(),
       json_build_object('holder_ref', c.holder_ref, 'insured_region', c.insured_region,
                         'insurance_type', c.insurance_type, 'birth_date', c.birth_date,
                         'gender', c.gender, 'opening_balance_fen', c.opening_balance_fen)
FROM candidates c JOIN ins USING (holder_ref)
ORDER BY c.line
"""


@dataclass
class LoadReport:
    read: int = 0
    created: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0
    refused_samples: list[tuple[int, list[str]]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        lines = [
            f"identity: read {self.read} rows, created {self.created} holders, skipped "
            f"{self.skipped} already registered, refused {self.refused} invalid "
            f"in {self.seconds:.1f} s ({self.rate:,.0f} rows/s)"
        ]
        for line, fields in self.refused_samples:
            lines.append(f"  line {line}: invalid {', '.join(fields)}")
        return "\n".join(lines)


def _batches(path: Path, size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    rows = enumerate(read_rows(path), start=1)
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _chunks(batch: list[Any], n: int) -> list[list[Any]]:
    step = max(1, -(-len(batch) // n))
    return [batch[i : i + step] for i in range(0, len(batch), step)]


async def load_postgres(
    settings: IdentitySettings, path: Path, *, batch_size: int = 50_000, workers: int | None = None
) -> LoadReport:
    """The COPY path (see the module docstring)."""
    import asyncpg

    report = LoadReport()
    started = time.perf_counter()
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    nproc = workers or os.cpu_count() or 1
    pool = ProcessPoolExecutor(
        nproc,
        initializer=prepare.init,
        initargs=(str(settings.data_keys_path), not settings.is_production),
    )
    loop = asyncio.get_running_loop()
    try:
        await conn.execute("SET statement_timeout = 0")
        batches = _batches(path, batch_size)

        def submit(batch: list[Any]) -> list[Future[prepare.Prepared]]:
            return [pool.submit(prepare.prepare, c) for c in _chunks(batch, nproc * 2)]

        first = next(batches, None)
        pending = (len(first), submit(first)) if first else None
        while pending is not None:
            count, futures = pending
            nxt = next(batches, None)
            pending = (len(nxt), submit(nxt)) if nxt else None  # overlap: prepare the next
            records: list[tuple[Any, ...]] = []
            for fut in futures:
                ok, refused = await asyncio.wrap_future(fut, loop=loop)
                records.extend(ok)
                report.refused += len(refused)
                room = 10 - len(report.refused_samples)
                report.refused_samples.extend(refused[: max(0, room)])
            report.read += count
            async with conn.transaction():
                await conn.execute(CREATE_STAGE)
                await conn.copy_records_to_table(
                    "holder_stage", records=records, columns=STAGE_COLUMNS
                )
                await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_LOCK)
                status = await conn.execute(MOVE, "loader")
            created = int(status.split()[-1])
            report.created += created
            report.skipped += len(records) - created
        # Fresh statistics and visibility map for the planner after a bulk change.
        await conn.execute("VACUUM ANALYZE holder")
        await conn.execute("VACUUM ANALYZE card")
    finally:
        pool.shutdown(cancel_futures=True)
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report


async def load_via_service(settings: IdentitySettings, path: Path) -> LoadReport:
    """The portable path (SQLite): the admin import's rules, 1000 rows per transaction."""
    from identity.holders.service import import_holders
    from shared.db import Database, make_engine
    from shared.fieldcrypto import load_data_keys

    report = LoadReport()
    started = time.perf_counter()
    keys = load_data_keys(settings.data_keys_path, create=not settings.is_production)
    db = Database(make_engine(settings.database_url))
    try:
        for batch in _batches(path, 1000):
            async with db.sessionmaker() as session:
                result = await import_holders(
                    session, keys, [row for _, row in batch], actor="loader"
                )
                await session.commit()
            report.read += len(batch)
            report.created += result.created
            report.skipped += result.updated + result.unchanged
            report.refused += len(result.rejected)
            for r in result.rejected[: max(0, 10 - len(report.refused_samples))]:
                report.refused_samples.append(
                    (batch[r.index][0], sorted({e.field for e in r.errors}))
                )
    finally:
        await db.dispose()
    report.seconds = time.perf_counter() - started
    return report


async def load(settings: IdentitySettings, path: Path, **kwargs: Any) -> LoadReport:
    """Load ``path`` with the fastest path the database allows."""
    if settings.database_url.startswith("postgresql"):
        return await load_postgres(settings, path, **kwargs)
    return await load_via_service(settings, path)
