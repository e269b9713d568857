"""Running a POST under an ``Idempotency-Key`` (required on money routes, accepted elsewhere).

The key is claimed in the request's own transaction before the work; the answer is stored in
the same transaction after it; a retry gets the stored answer (``Idempotency-Replayed:
true``), another body under the same key is 422, a retry while the original still runs is 409.

On PostgreSQL the work may store the answer itself, in its own last statement (one round trip
fewer: the settlement's posting does, see :func:`finish_cte`); :func:`run` then checks the
stored answer is the one it sends and otherwise stores it as before.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from settlement.deps import Parts
from shared.idempotency import Claim, StoredResponse, parse_key
from shared.problems import ServiceUnavailableError

TRANSIENT = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


_PENDING = "essc_idempotency_pending"

# shared.idempotency's finishing UPDATE as a CTE, parameters numbered from ``first``.
_FINISH_CTE = (
    "finish AS (UPDATE idempotency_record SET status_code = ${0}, response_body = ${1} "
    "WHERE client_id = ${2} AND key = ${3})"
)


@dataclass
class _Pending:
    claim: Claim
    status_code: int
    stored: Any = None


def claimed_read(session: AsyncSession) -> Any:
    """The row of the ``read`` given to :func:`run`, read by the key's claim (PostgreSQL), or
    None (no key, SQLite, no read): then the work reads it itself."""
    pending: _Pending | None = session.info.get(_PENDING)
    return None if pending is None else pending.claim.read


def finish_cte(first: int) -> str:
    """A CTE storing the request's answer (parameters ``$first`` to ``$first+3``), for the
    work's last statement on PostgreSQL; its arguments come from :func:`finish_args`."""
    return _FINISH_CTE.format(first, first + 1, first + 2, first + 3)


def finish_args(session: AsyncSession, answer: BaseModel) -> tuple[Any, ...] | None:
    """The arguments of :func:`finish_cte` storing ``answer`` (what the work will return), or
    None when the request has no key. For a statement of the request's own transaction, so
    that the answer commits exactly when the work does; ``answer`` must be what the work
    returns (:func:`run` compares, and stores the returned answer itself if they differ)."""
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        return None
    body = answer.model_dump(mode="json")
    pending.stored = body
    return pending.status_code, orjson.dumps(body), pending.claim.client_id, pending.claim.key


def json_response(body: object, status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


async def run(
    request: Request,
    session: AsyncSession,
    parts: Parts,
    *,
    client_id: str,
    key_header: str | None,
    required: bool,
    status_code: int,
    work: Callable[[], Awaitable[BaseModel]],
    read: tuple[str, tuple[Any, ...]] | None = None,
) -> Response:
    """Do ``work`` once per (client, key); raises 400 for a missing required key.

    ``read``: the work's first read, sent with the key's claim (see
    :meth:`shared.idempotency.Idempotency.begin`; the work finds it with :func:`claimed_read`).
    """
    key = parse_key(key_header, required=required)
    if key is None:
        return json_response((await work()).model_dump(mode="json"), status_code)
    begun = await parts.idempotency.begin_request(
        session, request, client_id=client_id, key=key, read=read
    )
    if isinstance(begun, StoredResponse):
        parts.metrics.replays.inc()
        return begun.to_response()
    pending = session.info[_PENDING] = _Pending(begun, status_code)
    try:
        body = (await work()).model_dump(mode="json")
    finally:
        session.info.pop(_PENDING, None)
    if pending.stored != body:  # not stored by the work (or another answer): store it here
        await parts.idempotency.finish(session, begun, status_code=status_code, body=body)
    return json_response(body, status_code)


def sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


async def retrying(
    session: AsyncSession, work: Callable[[], Awaitable[Response]], attempts: int = 3
) -> Response:
    """Run a request's transaction again (rolled back first) after a deadlock or a
    serialization failure, at most ``attempts`` times; then 503 with ``Retry-After``.

    Safe because everything the request did rolled back, and the call to issuance it may
    repeat (redeem) is idempotent by quote id.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except DBAPIError as exc:
            if sqlstate(exc) not in TRANSIENT:
                raise
            await session.rollback()
            if attempt == attempts:
                raise ServiceUnavailableError(
                    "The database could not order this request with a concurrent one; "
                    "nothing was written. Retry with the same Idempotency-Key.",
                    headers={"Retry-After": "1"},
                ) from None
            await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
    raise AssertionError("unreachable")
