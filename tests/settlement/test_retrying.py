"""Deadlocks and serialization failures: the request's transaction is run again, boundedly."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from settlement.idempotent import retrying
from shared.problems import ServiceUnavailableError

pytestmark = pytest.mark.asyncio


class Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class Session:
    def __init__(self) -> None:
        self.rollbacks = 0

    async def rollback(self) -> None:
        self.rollbacks += 1


def failing(codes: list[str]) -> Any:
    calls = {"n": 0}

    async def work() -> Response:
        calls["n"] += 1
        if codes:
            raise DBAPIError("UPDATE ...", None, Orig(codes.pop(0)))
        return Response("ok")

    return work, calls


async def test_a_deadlock_is_retried_after_a_rollback() -> None:
    session = Session()
    work, calls = failing(["40P01", "40001"])
    resp = await retrying(session, work)  # type: ignore[arg-type]
    assert resp.body == b"ok"
    assert calls["n"] == 3
    assert session.rollbacks == 2


async def test_retries_are_bounded_then_503() -> None:
    session = Session()
    work, calls = failing(["40P01"] * 5)
    with pytest.raises(ServiceUnavailableError) as info:
        await retrying(session, work)  # type: ignore[arg-type]
    assert calls["n"] == 3
    assert info.value.headers["Retry-After"] == "1"


async def test_other_database_errors_are_not_retried() -> None:
    session = Session()
    work, calls = failing(["23505"])
    with pytest.raises(DBAPIError):
        await retrying(session, work)  # type: ignore[arg-type]
    assert calls["n"] == 1
    assert session.rollbacks == 0
