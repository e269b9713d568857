"""Small pieces the services' command lines share."""

from __future__ import annotations

from pathlib import Path


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of an embedded SQLite database file (``sqlite+aiosqlite:///var/x.db``)."""
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        path = Path(url[len(prefix) :])
        path.parent.mkdir(parents=True, exist_ok=True)
