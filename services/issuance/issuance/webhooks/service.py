"""Partner webhooks: outbox rows written with each e-card status change, and their relay.

The row is added in the transaction of the change (so an event exists iff the change
committed). The relay, a background loop per process, claims due rows with
``FOR UPDATE SKIP LOCKED`` (one replica per row), POSTs each to the partner's webhook URL
signed with the partner's secret, and marks it delivered on a 2xx. Anything else is retried
with capped exponential backoff and jitter: at-least-once delivery, the same ``event_id``
every time. The request that caused the change never waits for the partner.

Signature: ``X-ESSC-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` with
``X-ESSC-Timestamp`` (unix seconds) and ``X-ESSC-Event-Id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson

from issuance.context import IssuanceContext
from issuance.models import Ecard, WebhookOutbox
from issuance.times import as_utc, utcnow
from issuance.webhooks import repository
from shared.http import UpstreamProblemError
from shared.problems import ProblemError
from shared.wire import ClientInfo, EcardWebhookType

logger = logging.getLogger("issuance.webhooks")


def enqueue(
    session: Any, ecard: Ecard, event_type: EcardWebhookType, *, now: datetime, reason: str
) -> str:
    """Add the outbox row for one change of ``ecard`` to the caller's transaction."""
    event_id = "evt_" + secrets.token_urlsafe(18)
    data = {
        "ecard_id": ecard.ecard_id,
        "status": ecard.status,
        "sign_no": ecard.sign_no,
        "sign_seq": ecard.sign_seq,
        "sign_level": ecard.sign_level,
        "reason": reason,
    }
    repository.add(
        session,
        WebhookOutbox(
            event_id=event_id,
            partner_client_id=ecard.partner_client_id,
            ecard_id=ecard.ecard_id,
            type=event_type.value,
            occurred_at=now,
            payload=orjson.dumps(data).decode(),
            attempts=0,
            next_attempt_at=now,
        ),
    )
    return event_id


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-ESSC-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def body_of(row: WebhookOutbox) -> bytes:
    return orjson.dumps(
        {
            "event_id": row.event_id,
            "type": row.type,
            "occurred_at": as_utc(row.occurred_at).isoformat().replace("+00:00", "Z"),
            "data": orjson.loads(row.payload),
        }
    )


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before try ``attempts + 1``: exponential, capped, with jitter in [½, 1]."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay * (0.5 + random.random() / 2)


async def client_info(ctx: IssuanceContext, client_id: str) -> ClientInfo | None:
    hit, info = ctx.clients.get(client_id)
    if hit:
        return info
    try:
        info = await ctx.runtime.client("identity").call(
            "GET", f"/internal/v1/clients/{client_id}", ClientInfo
        )
    except UpstreamProblemError as exc:
        if exc.status != 404:
            raise
        info = None
    ctx.clients.put(client_id, info)
    return info


async def _deliver(ctx: IssuanceContext, row: WebhookOutbox) -> tuple[str, str | None]:
    """POST one event; ("delivered"|"no_endpoint", None) or ("failed", reason)."""
    try:
        info = await client_info(ctx, row.partner_client_id)
    except ProblemError as exc:
        return "failed", f"client info: {exc.status}"
    if info is None or not info.webhook_url or not info.webhook_secret or info.status != "active":
        return "no_endpoint", None
    if not info.webhook_url.startswith(("https://", "http://")):
        return "no_endpoint", None
    body = body_of(row)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-ESSC-Event-Id": row.event_id,
        "X-ESSC-Timestamp": timestamp,
        "X-ESSC-Signature": sign(info.webhook_secret, timestamp, body),
    }
    timeout = aiohttp.ClientTimeout(total=ctx.settings.webhook_timeout_seconds)
    try:
        async with ctx.runtime.http.post(
            info.webhook_url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            await resp.read()
            status = resp.status
    except TimeoutError:
        return "failed", "timeout"
    except (aiohttp.ClientError, OSError) as exc:
        return "failed", type(exc).__name__
    if 200 <= status < 300:
        return "delivered", None
    return "failed", f"HTTP {status}"


async def relay_once(ctx: IssuanceContext) -> int:
    """Deliver one batch of due events; returns how many rows were claimed."""
    settings = ctx.settings
    async with ctx.runtime.db.sessionmaker() as session, session.begin():
        rows = await repository.claim_due(session, utcnow(), settings.webhook_batch_size)
        results = await asyncio.gather(*(_deliver(ctx, row) for row in rows))
        now = utcnow()
        for row, (outcome, error) in zip(rows, results, strict=True):
            attempts = row.attempts + 1
            # The metric's good case is `success` (deploy/observability/metrics.yaml).
            ctx.metrics.webhook_deliveries.labels(
                "success" if outcome == "delivered" else outcome
            ).inc()
            if error is None:
                await repository.mark_delivered(session, row.id, now, outcome, attempts)
            else:
                delay = backoff(
                    attempts,
                    settings.webhook_backoff_base_seconds,
                    settings.webhook_backoff_cap_seconds,
                )
                next_at = now + timedelta(seconds=delay)
                await repository.mark_failed(session, row.id, attempts, next_at, error)
                logger.info(
                    "webhook delivery failed",
                    extra={"event_id": row.event_id, "attempts": attempts, "error": error},
                )
        pending, oldest = await repository.pending_summary(session)
    ctx.metrics.outbox_pending.labels("webhook").set(pending)
    lag = 0.0 if oldest is None else max(0.0, (utcnow() - as_utc(oldest)).total_seconds())
    ctx.metrics.outbox_lag.labels("webhook").set(lag)
    return len(rows)


async def relay_loop(ctx: IssuanceContext) -> None:
    """Run :func:`relay_once` until cancelled; sleeps when idle, wakes early on new events."""
    while True:
        claimed = 0
        try:
            claimed = await relay_once(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("webhook relay pass failed: %s", type(exc).__name__)
        if claimed:
            continue
        ctx.relay_wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.relay_wakeup.wait(), ctx.settings.webhook_poll_seconds)
