"""What the issuance service adds to the shared runtime: data keys, trusted JWKS, limiter, metrics.

Built by the app's startup hook (never at import time) and kept on ``app.state.issuance``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client import Counter, Gauge

from issuance.config import IssuanceSettings
from issuance.hotdb import HotDb
from issuance.ratelimit import QrRateLimiter
from shared.app import Runtime
from shared.fieldcrypto import DataKeys, load_data_keys
from shared.kdf import KdfPool
from shared.metrics import Metrics
from shared.tokens.jwks import JwksCache
from shared.wire import ClientInfo

ASSERTION_AUDIENCE = "urn:essc:issuance"


@dataclass
class IssuanceMetrics:
    """The business instruments of the service (on its own registry)."""

    ecards_issued: Counter
    qr_issued: Counter
    qr_scans: Counter
    webhook_deliveries: Counter
    outbox_pending: Gauge
    outbox_lag: Gauge

    @classmethod
    def register(cls, metrics: Metrics) -> IssuanceMetrics:
        return cls(
            ecards_issued=metrics.counter(
                "essc_ecards_issued_total", "E-cards issued, by issuing region.", ["region"]
            ),
            qr_issued=metrics.counter(
                "essc_qr_issued_total", "QR codes issued, by purpose.", ["purpose"]
            ),
            qr_scans=metrics.counter(
                "essc_qr_scans_total",
                "QR scans by outcome (success, invalid, expired, already_used, not_active).",
                ["outcome"],
            ),
            webhook_deliveries=metrics.counter(
                "essc_webhook_deliveries_total",
                "Partner webhook delivery attempts by outcome.",
                ["outcome"],
            ),
            outbox_pending=metrics.gauge(
                "essc_outbox_pending", "Undelivered outbox rows, by outbox.", ["outbox"]
            ),
            outbox_lag=metrics.outbox_lag(),
        )


@dataclass
class ClientInfoCache:
    """Partner client details (webhook URL and secret) for ``ttl`` seconds, per process."""

    ttl: float
    entries: dict[str, tuple[float, ClientInfo | None]] = field(default_factory=dict)

    def get(self, client_id: str) -> tuple[bool, ClientInfo | None]:
        hit = self.entries.get(client_id)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return False, None
        return True, hit[1]

    def put(self, client_id: str, info: ClientInfo | None) -> None:
        if len(self.entries) > 10_000:
            self.entries.clear()
        self.entries[client_id] = (time.monotonic(), info)


@dataclass
class IssuanceContext:
    """The live parts the issuance routes and loops use."""

    settings: IssuanceSettings
    runtime: Runtime
    data_keys: DataKeys
    identity_jwks: JwksCache
    limiter: QrRateLimiter
    metrics: IssuanceMetrics
    clients: ClientInfoCache
    hotdb: HotDb
    kdf: KdfPool
    relay_wakeup: asyncio.Event = field(default_factory=asyncio.Event)


async def build_context(
    app: FastAPI, runtime: Runtime, settings: IssuanceSettings
) -> IssuanceContext:
    """Load the data keys (created outside production), open the limiter, wire the JWKS cache."""
    data_keys = await asyncio.to_thread(
        load_data_keys, settings.data_keys_path, create=not settings.is_production
    )
    identity_jwks = JwksCache(
        # Any identity replica serves the same keys: tried in turn, the first answer wins.
        [
            u.strip().rstrip("/") + "/.well-known/jwks.json"
            for u in settings.identity_url.split(",")
            if u.strip()
        ],
        client=runtime.jwks_http,
        ttl=settings.jwks_cache_seconds,
        min_refresh_interval=settings.jwks_min_refresh_seconds,
    )
    ctx = IssuanceContext(
        settings=settings,
        runtime=runtime,
        data_keys=data_keys,
        identity_jwks=identity_jwks,
        limiter=QrRateLimiter(settings.qr_rate_limit, settings.redis_url),
        metrics=app.state.issuance_metrics,
        clients=ClientInfoCache(settings.client_cache_seconds),
        kdf=KdfPool(settings.kdf_threads),
        hotdb=await HotDb.open(
            runtime.db,
            settings.database_url,
            size=settings.db_pool_size,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        ),
    )
    app.state.issuance = ctx
    return ctx
