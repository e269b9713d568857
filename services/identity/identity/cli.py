"""Command line of the identity service: ``python -m identity migrate`` and friends."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from identity.config import IdentitySettings
from shared.cli import ensure_sqlite_dir
from shared.migrate import upgrade

MIGRATIONS = "identity:migrations"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m identity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations up to head")
    args = parser.parse_args(argv)
    settings = IdentitySettings()
    if args.command == "migrate":
        ensure_sqlite_dir(settings.database_url)
        upgrade(MIGRATIONS, settings.database_url)
        print("identity: migrations applied")
    return 0
