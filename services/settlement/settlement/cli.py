"""Command line of the settlement service.

``python -m settlement migrate`` applies the migrations; ``seed-demo`` loads the ten demo
cities' policies for the current year (idempotent: unchanged parameters add no version);
``load-policies FILE`` loads a JSON file ``[{"region_code", "year", ...parameters}]`` or
``{"<region_code>": {"year", ...}}`` as new versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from settlement.businessday import business_date
from settlement.config import SettlementSettings
from settlement.policies import service as policy_service
from settlement.policies.demo import DEMO_POLICIES
from settlement.policies.schemas import PolicyLoad
from shared.cli import ensure_sqlite_dir
from shared.db import Database, make_engine
from shared.migrate import upgrade
from shared.validation import is_known_region

MIGRATIONS = "settlement:migrations"


def _entries(doc: Any) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(doc, dict):
        return [(str(k), dict(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [(str(item.pop("region_code", "")), item) for item in map(dict, doc)]
    raise ValueError("expected a JSON object or array of policies")


async def load_policies(
    settings: SettlementSettings, entries: list[tuple[str, dict[str, Any]]], source: str
) -> list[str]:
    """Validate every entry, then load all in one transaction; returns one line per entry."""
    parsed: list[tuple[str, PolicyLoad]] = []
    problems: list[str] = []
    for i, (region, raw) in enumerate(entries):
        if not is_known_region(region):
            problems.append(f"entry {i}: {region!r} is not a known region code")
            continue
        try:
            parsed.append((region, PolicyLoad.model_validate(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problems.append(f"entry {i} ({region}): {loc}: {err['msg']}")
    if problems:
        raise ValueError("\n".join(problems))
    db = Database(make_engine(settings.database_url, pool_size=1, max_overflow=0))
    out: list[str] = []
    try:
        async with db.sessionmaker() as session, session.begin():
            now = datetime.now(UTC)
            for region, policy in parsed:
                loaded = await policy_service.load(session, region, policy, source=source, now=now)
                state = "loaded as" if loaded.created else "unchanged,"
                out.append(f"{region} {loaded.year}: {state} version {loaded.version}")
    finally:
        await db.dispose()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m settlement", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations up to head")
    sub.add_parser("seed-demo", help="load the ten demo cities' policies (idempotent)")
    load = sub.add_parser("load-policies", help="load policies from a JSON file as new versions")
    load.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    settings = SettlementSettings()
    if args.command == "migrate":
        ensure_sqlite_dir(settings.database_url)
        upgrade(MIGRATIONS, settings.database_url)
        print("settlement: migrations applied")
        return 0
    if args.command == "seed-demo":
        year = business_date(datetime.now(UTC), settings.business_utc_offset_hours).year
        entries = [(code, {**params, "year": year}) for code, params in DEMO_POLICIES.items()]
        lines = asyncio.run(load_policies(settings, entries, "seed-demo"))
        created = sum("loaded" in line for line in lines)
        unchanged = len(lines) - created
        print(f"settlement: demo policies for {year}: {created} loaded, {unchanged} unchanged")
        return 0
    try:
        doc = json.loads(args.file.read_text(encoding="utf-8"))
        lines = asyncio.run(load_policies(settings, _entries(doc), f"file:{args.file.name}"[:128]))
    except (OSError, ValueError) as exc:
        print(f"settlement: load-policies failed:\n{exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
