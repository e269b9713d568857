"""``shared.db.after_commit``: actions follow the commit, not the attempt."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from shared.db import after_commit


@pytest.mark.asyncio
async def test_actions_run_after_the_outer_commit_only_and_never_after_a_rollback() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    done: list[str] = []
    try:
        async with async_sessionmaker(engine)() as session:
            await session.execute(text("SELECT 1"))
            after_commit(session, lambda: done.append("before savepoint"))
            async with session.begin_nested():  # releasing a savepoint is not the commit
                await session.execute(text("SELECT 1"))
            after_commit(session, lambda: done.append("after savepoint"))
            assert done == []
            await session.commit()
            assert done == ["before savepoint", "after savepoint"]

            await session.execute(text("SELECT 1"))
            after_commit(session, lambda: done.append("rolled back"))
            await session.rollback()  # e.g. a retried serialization failure
            await session.execute(text("SELECT 1"))
            await session.commit()
            assert done == ["before savepoint", "after savepoint"]

            def failing() -> None:
                raise RuntimeError("boom")

            await session.execute(text("SELECT 1"))
            after_commit(session, failing)
            after_commit(session, lambda: done.append("next"))
            await session.commit()  # a failing action is logged; the others still run
            assert done[-1] == "next"
    finally:
        await engine.dispose()
