"""Alembic plumbing shared by the services: each service keeps its own history and database.

A service's ``migrations/env.py`` is two lines calling :func:`run_env`; its CLI
calls :func:`upgrade`. Migrations run in a worker thread with their own event
loop, so they can be applied from inside async code (tests, the dev launcher).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: str, url: str) -> Config:
    """An in-memory Alembic config for ``script_location`` (``pkg:migrations``) and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["essc_url"] = url
    return cfg


def upgrade(script_location: str, url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; safe to call from a thread with a running loop."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(script_location, url), revision)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name="alembic-upgrade")
    thread.start()
    thread.join()
    if error:
        raise error[0]


def run_env(target_metadata: MetaData) -> None:
    """Body of a service's ``env.py``: run migrations online on the configured async URL."""
    config = context.config
    url = config.attributes.get("essc_url") or config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not configured"

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        kwargs: dict[str, Any] = {"poolclass": pool.NullPool}
        engine = create_async_engine(url, **kwargs)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_async())
