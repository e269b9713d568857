"""The bulk loader through its command line, and personal data at rest (raw database bytes)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from identity.cli import MIGRATIONS
from identity.holders import crypto
from identity.loader.files import read_rows
from shared.fieldcrypto import load_data_keys
from shared.migrate import upgrade
from support.pg import create_databases, drop_databases, server_url

pytestmark = pytest.mark.slow


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "identity", *args],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )


_DIGITS = re.compile(rb"[\dX]{11,}")


def leaks(data: bytes, rows: list[dict[str, Any]]) -> list[str]:
    """Which ID numbers, phones or names of ``rows`` occur in ``data`` (one regex pass each,
    not one substring search per value)."""
    found: list[str] = []
    windows: set[bytes] = set()
    for m in _DIGITS.finditer(data):
        run = m.group()
        for size in (11, 18):
            windows.update(run[i : i + size] for i in range(len(run) - size + 1))
    for r in rows:
        if r["id_number"].encode() in windows or r["phone"].encode() in windows:
            found.append("id_number/phone")
    # "replace", not "ignore": dropping invalid bytes would glue random characters of
    # ciphertexts into runs and find names by chance.
    text = data.decode("utf-8", errors="replace")
    cjk_runs = set(re.findall("[\u3400-\u9fff·]{2,}", text))
    names = {r["name"] for r in rows}
    found += [f"name {n}" for n in names if any(n in run for run in cjk_runs)]
    return found


@pytest.mark.postgres
def test_loader_on_postgres_and_no_plaintext_at_rest(tmp_path: Path, run_id: str) -> None:
    name = f"essc_{run_id}_idload"
    asyncio.run(create_databases([name]))
    url = server_url().replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    env = {
        "IDENTITY_DATABASE_URL": url,
        "IDENTITY_KEYS_DIR": str(tmp_path / "keys"),
        "IDENTITY_ENVIRONMENT": "test",
    }
    try:
        upgrade(MIGRATIONS, url)
        data = tmp_path / "holders.jsonl"
        _cli(env, "generate-holders", "20000", "--out", str(data), "--seed", "99")
        with data.open("a") as fh:  # one invalid row: refused, named by field, never echoed
            fh.write(
                '{"name": "Bad1", "id_number": "123", "phone": "1", "card_number": "x", '
                '"region_code": "999999"}\n'
            )
        first = _cli(env, "load-holders", str(data), "--batch-size", "7000")
        assert "created 20000 holders" in first.stdout, first.stdout
        assert "refused 1 invalid" in first.stdout, first.stdout
        assert (
            "line 20001: invalid card_number, id_number, name, phone, region_code" in first.stdout
        )
        again = _cli(env, "load-holders", str(data))
        assert "created 0 holders, skipped 20000" in again.stdout, again.stdout
        rows = list(read_rows(data))[:20000]
        keys = load_data_keys(tmp_path / "keys" / "data.json", create=False)
        asyncio.run(_check_pg(name, rows, keys))
    finally:
        asyncio.run(drop_databases([name]))


async def _check_pg(name: str, rows: list[dict[str, Any]], keys: Any) -> None:
    conn = await asyncpg.connect(server_url() + "/" + name)
    try:
        assert await conn.fetchval("SELECT count(*) FROM holder") == 20000
        assert await conn.fetchval("SELECT count(*) FROM card WHERE status = 'active'") == 20000
        events = await conn.fetch("SELECT seq, type, payload FROM outbox_event ORDER BY seq")
        assert len(events) == 20000
        assert {e["type"] for e in events} == {"holder.upserted"}
        # A lookup by blind index finds the holder and decrypts to the loaded values.
        probe = rows[12345]
        found = await conn.fetchrow(
            "SELECT h.holder_ref, h.name_enc, c.card_number FROM holder h "
            "JOIN card c ON c.holder_ref = h.holder_ref WHERE h.id_number_bidx = $1",
            crypto.id_index(keys, probe["id_number"]),
        )
        assert found is not None
        assert found["card_number"] == probe["card_number"]
        assert (
            crypto.open_field(keys, found["holder_ref"], "name", found["name_enc"]) == probe["name"]
        )
        # Every text and bytea column of every table: no plaintext ID number, name or phone.
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'bytea', 'json', 'jsonb')"
        )
        blob = bytearray()
        for col in columns:
            cast = "" if col["data_type"] == "bytea" else "::text"
            values = await conn.fetch(
                f'SELECT "{col["column_name"]}"{cast} AS v FROM "{col["table_name"]}"'
            )
            for v in values:
                if v["v"] is not None:
                    value = v["v"]
                    blob += (value if isinstance(value, bytes) else value.encode()) + b"\n"
        data = bytes(blob)
        assert len(data) > 1_000_000
        assert leaks(data, rows) == []
        # The check itself sees a planted value.
        assert leaks(data + rows[7]["phone"].encode(), rows) == ["id_number/phone"]
    finally:
        await conn.close()


def test_loader_on_sqlite_and_no_plaintext_in_the_file(tmp_path: Path) -> None:
    db = tmp_path / "identity.db"
    env = {
        "IDENTITY_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "IDENTITY_KEYS_DIR": str(tmp_path / "keys"),
        "IDENTITY_ENVIRONMENT": "test",
    }
    _cli(env, "migrate")
    data = tmp_path / "holders.csv"
    _cli(env, "generate-holders", "1500", "--out", str(data), "--seed", "5")
    out = _cli(env, "load-holders", str(data))
    assert "created 1500 holders" in out.stdout
    seeded = _cli(
        env,
        "seed-demo",
        "--out",
        str(tmp_path / "clients.json"),
        "--holders-out",
        str(tmp_path / "demo.json"),
        "--holders",
        "50",
    )
    assert "demo data ready" in seeded.stdout
    rows = list(read_rows(data))
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("identity.db*"))
    assert len(raw) > 100_000
    assert leaks(raw, rows) == []
    assert leaks(raw + rows[3]["name"].encode(), rows) == [f"name {rows[3]['name']}"]
