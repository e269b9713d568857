"""Command line of the issuance service: ``python -m issuance migrate`` and friends."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from issuance.config import IssuanceSettings
from shared.cli import ensure_sqlite_dir
from shared.migrate import upgrade

MIGRATIONS = "issuance:migrations"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m issuance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations up to head")
    args = parser.parse_args(argv)
    settings = IssuanceSettings()
    if args.command == "migrate":
        ensure_sqlite_dir(settings.database_url)
        upgrade(MIGRATIONS, settings.database_url)
        print("issuance: migrations applied")
    return 0
