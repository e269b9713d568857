"""The settlement service's declarative base and its per-request session dependency.

The unit of work is :func:`shared.db.request_session`'s (commit once after the handler,
before the response; roll back on any error) with two additions:

- a problem raised with :func:`record_after_rollback` carries a small write (an attempt
  counted for the risk rules, an alert) that must survive the request's rollback: it runs in
  its own short transaction on the same connection, after the rollback;
- a test-only fault hook: with ``fault_injection`` on and ``environment=test``, a request that
  asked for it (``X-Test-Fault: kill-after-commit``) SIGKILLs the process right after its
  commit, before the answer is sent (the crash-safety test).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.db import Database, commit, new_metadata

logger = logging.getLogger("settlement.db")

AfterRollback = Callable[[AsyncSession], Awaitable[None]]
_AFTER_ROLLBACK = "_essc_after_rollback"
KILL_AFTER_COMMIT = "kill_after_commit"


class Base(DeclarativeBase):
    """Every table of the settlement database (and only of it)."""

    metadata = new_metadata()


def record_after_rollback(exc: BaseException, write: AfterRollback) -> BaseException:
    """Attach ``write`` to ``exc``: it commits on its own after the request rolls back."""
    setattr(exc, _AFTER_ROLLBACK, write)
    return exc


async def settlement_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (see the module docstring)."""
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        try:
            yield session
        except BaseException as exc:
            await session.rollback()
            write: AfterRollback | None = getattr(exc, _AFTER_ROLLBACK, None)
            if write is not None:
                try:
                    await write(session)
                    await session.commit()
                except Exception:
                    logger.exception("recording a failed attempt failed")
                    await session.rollback()
            raise
        else:
            await commit(session)
            if getattr(request.state, KILL_AFTER_COMMIT, False):
                os.kill(os.getpid(), signal.SIGKILL)


SessionDep = Annotated[AsyncSession, Depends(settlement_session, scope="function")]
