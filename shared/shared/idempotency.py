"""Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header) for POST operations.

Each service that honours the header adds :func:`idempotency_table` to its
metadata and migrations. A request's key is claimed *in the same transaction*
as its business write: the claim row is inserted first; the business work and
the stored answer follow; all commit together or not at all. Consequences:

- same key, same body, after the original committed → the stored answer again;
- same key, another body → 422 ``idempotency-key-reused``;
- same key while the original transaction is still open → the claim waits at
  most ``in_flight_wait_ms`` on the row lock, then 409 ``idempotency-in-flight``
  (PostgreSQL; SQLite serialises writers instead);
- the original failed and rolled back → no claim remains, a retry runs afresh.

Keys are scoped per client and kept at least 24 hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from shared.db import driver_connection, is_connection_error
from shared.fieldcrypto import FieldCipher
from shared.problems import BadRequestError, ConflictError, UnprocessableError

logger = logging.getLogger("shared.idempotency")

KEY_HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
RETENTION = timedelta(hours=24)


def idempotency_table(metadata: MetaData) -> Table:
    """The ``idempotency_record`` table on a service's metadata (add it to a migration)."""
    return Table(
        "idempotency_record",
        metadata,
        Column("client_id", String(128), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("fingerprint", LargeBinary(32), nullable=False),
        Column("status_code", Integer, nullable=True),
        Column("response_body", LargeBinary, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    )


def parse_key(value: str | None, *, required: bool) -> str | None:
    """Validate the header: 1–255 printable ASCII characters; missing where required → 400."""
    if value is None:
        if required:
            raise BadRequestError(
                "The Idempotency-Key header is required for this operation.",
                slug="idempotency-key-missing",
                title="Idempotency-Key required",
            )
        return None
    if not _KEY.match(value):
        raise BadRequestError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            slug="idempotency-key-invalid",
            title="Invalid Idempotency-Key",
        )
    return value


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    """SHA-256 over the method, the path and the canonical JSON of the body."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).digest()


@dataclass(frozen=True)
class StoredResponse:
    """An answer recorded under a key, replayed verbatim."""

    status_code: int
    body: Any

    def to_response(self) -> Response:
        return Response(
            orjson.dumps(self.body),
            status_code=self.status_code,
            media_type="application/json",
            headers={"Idempotency-Replayed": "true"},
        )


@dataclass(frozen=True)
class _Stored:
    fingerprint: bytes
    status_code: int | None
    response_body: bytes | None


@dataclass
class Claim:
    """A key claimed by the current transaction; :meth:`Idempotency.finish` records the answer."""

    client_id: str
    key: str
    # The row of the ``read`` given to :meth:`Idempotency.begin` (PostgreSQL), read by the
    # claim's own statement; None on SQLite or without one.
    read: Any = None


# Try the key's advisory lock; if free, insert the claim; either way read any committed row.
_PG_CLAIM = """
WITH lock AS (
  SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 8675309)) AS got
), ins AS (
  INSERT INTO idempotency_record (client_id, key, fingerprint, created_at, expires_at)
  SELECT $1, $2, $3, $4, $5 FROM lock WHERE got
  ON CONFLICT DO NOTHING RETURNING key
)
SELECT (SELECT got FROM lock) AS got, (SELECT key FROM ins) AS claimed,
       r.fingerprint, r.status_code, r.response_body
FROM (SELECT 1) AS one
LEFT JOIN idempotency_record r ON r.client_id = $1 AND r.key = $2
"""


@lru_cache(maxsize=16)
def _pg_claim_reading(select: str) -> str:
    """:data:`_PG_CLAIM` also returning the row of ``select`` (its parameters from $6): one
    round trip for the claim and the request's first read."""
    head, sep, tail = _PG_CLAIM.partition("\nFROM (SELECT 1) AS one")
    return f"{head}, extra.*{sep}{tail}LEFT JOIN ({select}) AS extra ON true\n"


_PG_READ = (
    "SELECT fingerprint, status_code, response_body FROM idempotency_record "
    "WHERE client_id = $1 AND key = $2"
)
_PG_FINISH = (
    "UPDATE idempotency_record SET status_code = $1, response_body = $2 "
    "WHERE client_id = $3 AND key = $4"
)


class Idempotency:
    """Claims keys and records answers in the request's own transaction."""

    def __init__(self, table: Table, *, in_flight_wait_ms: int = 200) -> None:
        if table.name != "idempotency_record":
            raise ValueError("use idempotency_table(metadata)")
        self.table = table
        self.in_flight_wait_ms = in_flight_wait_ms

    async def begin_request(
        self,
        session: AsyncSession,
        request: Request,
        *,
        client_id: str,
        key: str,
        read: tuple[str, tuple[Any, ...]] | None = None,
    ) -> Claim | StoredResponse:
        """:meth:`begin` for a FastAPI request (its method, path and raw body)."""
        return await self.begin(
            session,
            client_id=client_id,
            key=key,
            method=request.method,
            path=request.url.path,
            body=await request.body(),
            read=read,
        )

    async def begin(
        self,
        session: AsyncSession,
        *,
        client_id: str,
        key: str,
        method: str,
        path: str,
        body: bytes,
        read: tuple[str, tuple[Any, ...]] | None = None,
    ) -> Claim | StoredResponse:
        """Claim ``key`` for this request, or return the stored answer of an earlier one.

        ``read`` (PostgreSQL; ignored on SQLite): a SELECT of at most one row, with its
        parameters numbered from $6, and their values; the claim's statement reads it too and
        the claim carries its row (:attr:`Claim.read`; all columns None when it found none).

        Raises 422 if the key was used with another request, 409 if that request is
        still in flight.
        """
        fp = fingerprint(method, path, body)
        now = datetime.now(UTC)
        dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
        values = {
            "client_id": client_id,
            "key": key,
            "fingerprint": fp,
            "created_at": now,
            "expires_at": now + RETENTION,
        }
        if dialect == "postgresql":
            claimed, row = await self._claim_pg(session, values, read)
        else:
            stmt = sqlite_insert(self.table).values(**values).on_conflict_do_nothing()
            result = await session.execute(stmt.returning(self.table.c.key))
            claimed = result.first() is not None
            row = None
            if not claimed:
                row = (
                    await session.execute(
                        select(self.table).where(
                            self.table.c.client_id == client_id, self.table.c.key == key
                        )
                    )
                ).one()
        if claimed:
            return Claim(client_id, key, row)
        assert row is not None
        if row.fingerprint != fp:
            raise UnprocessableError(
                "This Idempotency-Key was already used with a different request.",
                slug="idempotency-key-reused",
                title="Idempotency-Key reused",
            )
        if row.status_code is None:
            raise ConflictError(
                "A request with this Idempotency-Key is still being processed.",
                slug="idempotency-in-flight",
                title="Request in flight",
                headers={"Retry-After": "1"},
            )
        return StoredResponse(row.status_code, orjson.loads(row.response_body))

    async def _claim_pg(
        self,
        session: AsyncSession,
        values: dict[str, Any],
        read: tuple[str, tuple[Any, ...]] | None = None,
    ) -> tuple[bool, Any | None]:
        """The claim on PostgreSQL in one round trip, on the driver connection (SQLAlchemy's
        per-statement cost was most of a settlement's; see the settlement README).

        Every claimer first takes a transaction-level advisory lock on the key (try, never
        wait), so the INSERT never blocks behind another open transaction. A key whose lock
        is taken is in flight: polled every 20 ms for at most ``in_flight_wait_ms`` (the
        original may finish and leave its answer), then 409.
        """
        conn = await driver_connection(session)
        args = (
            values["client_id"],
            values["key"],
            values["fingerprint"],
            values["created_at"],
            values["expires_at"],
        )
        sql = _PG_CLAIM
        if read is not None:
            sql = _pg_claim_reading(read[0])
            args = (*args, *read[1])
        deadline = time.monotonic() + self.in_flight_wait_ms / 1000
        while True:
            row = await conn.fetchrow(sql, *args)
            if row["claimed"] is not None:
                return True, row if read is not None else None
            if row["status_code"] is not None or (row["got"] and row["fingerprint"] is not None):
                return False, _Stored(row["fingerprint"], row["status_code"], row["response_body"])
            if row["got"]:  # the conflicting row committed after this statement's snapshot
                again = await conn.fetchrow(_PG_READ, values["client_id"], values["key"])
                if again is not None:
                    return False, _Stored(
                        again["fingerprint"], again["status_code"], again["response_body"]
                    )
            if time.monotonic() >= deadline:
                raise ConflictError(
                    "A request with this Idempotency-Key is still being processed.",
                    slug="idempotency-in-flight",
                    title="Request in flight",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(0.02)

    async def finish(
        self, session: AsyncSession, claim: Claim, *, status_code: int, body: Any
    ) -> None:
        """Record the answer of a claimed request (commits with the business write)."""
        encoded = orjson.dumps(body)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            conn = await driver_connection(session)
            await conn.execute(
                _PG_FINISH,
                status_code,
                encoded,
                claim.client_id,
                claim.key,
            )
            return
        await session.execute(
            update(self.table)
            .where(self.table.c.client_id == claim.client_id, self.table.c.key == claim.key)
            .values(status_code=status_code, response_body=encoded)
        )

    async def purge_expired(self, session: AsyncSession) -> int:
        """Delete records past their retention (a periodic job)."""
        result = await session.execute(
            delete(self.table).where(self.table.c.expires_at < datetime.now(UTC))
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def purge_expired_batch(engine: Any, table: Table, *, batch: int = 1000) -> int:
    """Delete at most ``batch`` records past their retention, in one short transaction."""
    expired = (
        select(table.c.client_id, table.c.key)
        .where(table.c.expires_at < datetime.now(UTC))
        .limit(batch)
    )
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(table).where(tuple_(table.c.client_id, table.c.key).in_(expired))
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_loop(engine: Any, table: Table, interval: float, *, batch: int = 1000) -> None:
    """Every ``interval`` seconds, delete expired records in batches until none is left.

    Stored answers (encrypted, but holding tokens and masked personal data) live 24 hours;
    without this the table only grows. Replicas may all run it: a batch is a plain DELETE.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = batch
            while deleted >= batch:  # a backlog goes in batches, each its own transaction
                deleted = await purge_expired_batch(engine, table, batch=batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next round tries again
            logger.warning("idempotency purge failed: %s", type(exc).__name__)


# --- Accepted-on-every-POST: the middleware for operations that move no money --------------

_ABANDONED_AFTER = timedelta(seconds=60)


class _ClaimReleased(Exception):
    """The conflicting claim was deleted before it could be read: claim again."""


class IdempotencyMiddleware:
    """``Idempotency-Key`` on every POST of a service that moves no money (identity, issuance).

    Money routes claim the key inside their own business transaction (see
    :class:`Idempotency`). Here the claim, the work and the stored answer are three
    short transactions instead: the claim commits first (so a concurrent retry sees
    it in flight → 409), the request runs, and a 2xx answer is stored (encrypted when
    a cipher is given: it may hold tokens and masked personal data) before it is sent,
    so that a retry made as soon as the answer arrives is a replay. A non-2xx answer
    releases the claim, so the retry runs afresh. If the process dies between the
    work's commit and storing the answer, the claim is taken over after 60 seconds
    and the request runs again: acceptable for these operations (a second QR code,
    the same e-card returned again), never used for money.

    The key is scoped to the verified caller (the internal token's client id); a
    request without a valid token passes through untouched (the route answers 401).
    """

    def __init__(self, app: Any, *, table: Table, runtime: Any, routes: Any = ()) -> None:
        self.app = app
        self.table = table
        self.runtime = runtime  # a callable returning the service Runtime (set by the lifespan)
        # The app's routes: a replay, which never reaches the router, is labelled with the
        # template of the route it was meant for (metrics, spans), not ``unmatched``.
        self.routes = tuple(routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = None
        token = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                raw_key = value.decode("latin-1")
            elif name == b"authorization":
                token = value.decode("latin-1")
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        runtime = self.runtime()
        try:
            key = parse_key(raw_key, required=False)
        except BadRequestError as exc:
            await _send_problem(send, scope, exc.status, exc.slug, exc.detail)
            return
        client_id = await _caller(runtime, token)
        if client_id is None or key is None:
            await self.app(scope, receive, send)
            return
        body, replay_receive = await _buffer_body(receive)
        fp = fingerprint("POST", scope["path"], body)
        try:
            stored = await self._claim(runtime, client_id, key, fp)
        except (UnprocessableError, ConflictError) as exc:
            await _send_problem(send, scope, exc.status, exc.slug, exc.detail, exc.headers)
            return
        except Exception as exc:
            # This layer sits outside the app's problem handlers: answer here, never as a
            # bare 500 text. Nothing ran yet, so a lost database is a plain 503.
            if is_connection_error(exc):
                await _send_problem(
                    send,
                    scope,
                    503,
                    "service-unavailable",
                    "The database is unavailable; nothing was done. Retry with the same key.",
                    {"Retry-After": "1"},
                )
                return
            logger.error("idempotency claim failed: %s", type(exc).__name__)
            await _send_problem(send, scope, 500, "internal-error", "An unexpected error occurred.")
            return
        if stored is not None:
            runtime.metrics.idempotent_replays().inc()
            _record_route(scope, self.routes)
            await _send_stored(send, stored)
            return
        captured = _Capture(send)
        try:
            await self.app(scope, replay_receive, captured)
        finally:
            ok = captured.complete and captured.status is not None and 200 <= captured.status < 300
            await self._settle(runtime, client_id, key, captured if ok else None)
        # Only now does a 2xx answer leave: a retry sent the moment the client has it must
        # find the stored answer, not a claim still in flight (409).
        await captured.release()

    async def _claim(
        self, runtime: Any, client_id: str, key: str, fp: bytes
    ) -> tuple[int, bytes, bytes] | None:
        # The claim that blocked ours can be released (its request failed) between our
        # INSERT and our read: then there is nothing to replay and the key is free again.
        for _ in range(3):
            try:
                return await self._claim_once(runtime, client_id, key, fp)
            except _ClaimReleased:
                continue
        raise ConflictError(
            "A request with this Idempotency-Key is still being processed.",
            slug="idempotency-in-flight",
            title="Request in flight",
            headers={"Retry-After": "1"},
        )

    async def _claim_once(
        self, runtime: Any, client_id: str, key: str, fp: bytes
    ) -> tuple[int, bytes, bytes] | None:
        now = datetime.now(UTC)
        t = self.table
        async with runtime.db.engine.begin() as conn:
            dialect = conn.dialect.name
            values = {
                "client_id": client_id,
                "key": key,
                "fingerprint": fp,
                "created_at": now,
                "expires_at": now + RETENTION,
            }
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt: Any = pg_insert(t).values(**values).on_conflict_do_nothing()
            else:
                stmt = sqlite_insert(t).values(**values).on_conflict_do_nothing()
            inserted = (await conn.execute(stmt.returning(t.c.key))).first()
            if inserted is not None:
                return None
            row = (
                await conn.execute(select(t).where(t.c.client_id == client_id, t.c.key == key))
            ).first()
            if row is None:
                raise _ClaimReleased
            if row.fingerprint != fp:
                raise UnprocessableError(
                    "This Idempotency-Key was already used with a different request.",
                    slug="idempotency-key-reused",
                    title="Idempotency-Key reused",
                )
            if row.status_code is None:
                created = (
                    row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                )
                if now - created < _ABANDONED_AFTER:
                    raise ConflictError(
                        "A request with this Idempotency-Key is still being processed.",
                        slug="idempotency-in-flight",
                        title="Request in flight",
                        headers={"Retry-After": "1"},
                    )
                taken = await conn.execute(
                    update(t)
                    .where(
                        t.c.client_id == client_id,
                        t.c.key == key,
                        t.c.status_code.is_(None),
                        t.c.created_at == row.created_at,
                    )
                    .values(created_at=now, expires_at=now + RETENTION)
                )
                if getattr(taken, "rowcount", 0) != 1:
                    raise ConflictError(
                        "A request with this Idempotency-Key is still being processed.",
                        slug="idempotency-in-flight",
                        title="Request in flight",
                        headers={"Retry-After": "1"},
                    )
                return None
            plain = _open(runtime, client_id, key, row.response_body)
            content_type, _, payload = plain.partition(b"\n")
            return int(row.status_code), content_type, payload

    async def _settle(
        self, runtime: Any, client_id: str, key: str, captured: _Capture | None
    ) -> None:
        t = self.table
        where = (t.c.client_id == client_id, t.c.key == key)
        try:
            async with runtime.db.engine.begin() as conn:
                if captured is None:
                    await conn.execute(delete(t).where(*where))
                    return
                blob = captured.content_type + b"\n" + captured.body
                await conn.execute(
                    update(t)
                    .where(*where)
                    .values(
                        status_code=captured.status,
                        response_body=_seal(runtime, client_id, key, blob),
                    )
                )
        except Exception:  # the answer was sent; a lost record only means a re-run later
            logger.warning("idempotency record not stored", exc_info=False)


class _Capture:
    """Keeps a copy of a response's status, type and body; holds a 2xx answer back until
    :meth:`release` (after it is stored), passes any other straight through."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.status: int | None = None
        self.content_type = b"application/json"
        self.chunks: list[bytes] = []
        self.complete = False
        self._holding = False
        self._held: list[Any] = []

    async def release(self) -> None:
        """Send what was held back."""
        held, self._held = self._held, []
        for message in held:
            await self._send(message)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    self.content_type = bytes(value)
            self._holding = 200 <= self.status < 300
        elif message["type"] == "http.response.body":
            self.chunks.append(bytes(message.get("body", b"")))
            self.complete = not message.get("more_body", False)
        if self._holding:
            self._held.append(message)
            return
        await self._send(message)


async def _buffer_body(receive: Any) -> tuple[bytes, Any]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _caller(runtime: Any, authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    try:
        claims = await runtime.verifier.verify(authorization[7:])
    except Exception:
        return None
    return str(claims.client_id)


def _aad_row(client_id: str, key: str) -> str:
    return hashlib.sha256(f"{client_id}\x1f{key}".encode()).hexdigest()


_SEALED = b"\x00E1"  # never the start of a content type


def _seal(runtime: Any, client_id: str, key: str, blob: bytes) -> bytes:
    cipher: FieldCipher | None = getattr(runtime, "idempotency_cipher", None)
    if cipher is None:
        return blob
    sealed = cipher.encrypt(
        blob.decode("latin-1"),
        table="idempotency_record",
        column="response_body",
        row=_aad_row(client_id, key),
    )
    return _SEALED + sealed


def _open(runtime: Any, client_id: str, key: str, blob: bytes) -> bytes:
    if not blob.startswith(_SEALED):
        return blob
    cipher: FieldCipher = runtime.idempotency_cipher
    plain = cipher.decrypt(
        blob[len(_SEALED) :],
        table="idempotency_record",
        column="response_body",
        row=_aad_row(client_id, key),
    )
    return plain.encode("latin-1")


def _record_route(scope: Any, routes: tuple[Any, ...]) -> None:
    """Put the route ``scope`` matches in it, as the router does for a routed request."""
    from starlette.routing import Match

    for route in routes:
        match, _child = route.matches(scope)
        if match is Match.FULL:
            scope["route"] = route
            return


async def _send_stored(send: Any, stored: tuple[int, bytes, bytes]) -> None:
    status, content_type, body = stored
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"idempotency-replayed", b"true"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_problem(
    send: Any,
    scope: Any,
    status: int,
    slug: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    from shared.problems import problem_bytes

    body = problem_bytes(status, slug=slug, detail=detail, instance=scope.get("path", ""))
    out = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    out += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
