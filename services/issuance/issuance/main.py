"""The issuance service's app factory."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from issuance.config import IssuanceSettings
from issuance.context import IssuanceMetrics, build_context
from issuance.ecards.router import router as ecards_router
from issuance.events import service as events_service
from issuance.h5.router import router as h5_router
from issuance.models import idempotency_record
from issuance.qrcodes.router import router as qrcodes_router
from issuance.scans.router import router as scans_router
from issuance.settlement_tokens.router import router as internal_router
from issuance.webhooks import service as webhook_service
from shared.app import Runtime, build_service_app

KEY_PURPOSES = ("ecard-credential", "qr")

DESCRIPTION = (
    "The e-card: issuing it through a partner app, its lifecycle, the short-lived one-time QR "
    "codes, and the scanner's exchange of a QR for identity."
)

TAGS = [
    {"name": "E-cards", "description": "Issue and manage e-cards (partner apps)."},
    {"name": "QR codes", "description": "Dynamic one-time QR codes (partner apps)."},
    {"name": "Scanning", "description": "Hospitals and scanners redeem QR codes."},
    {"name": "E-card web page", "description": "Short-lived links to the e-card's page."},
]


def create_app(settings: IssuanceSettings) -> FastAPI:
    """Build the issuance app; nothing is opened until its lifespan starts."""
    app: FastAPI

    async def start(runtime: Runtime) -> None:
        ctx = await build_context(app, runtime, settings)
        runtime.idempotency_cipher = ctx.data_keys.cipher
        runtime.readiness["hot-path pool"] = ctx.hotdb.ping
        # Move everything alive after start-up out of the collector's view: QR encoding
        # allocates many short-lived objects, and full collections that walk the app's
        # long-lived objects were a measurable part of a PNG code's cost (README "Issuance").
        gc.freeze()
        if settings.background_tasks:
            runtime.spawn(events_service.consume_loop(ctx), "identity-events")
            runtime.spawn(webhook_service.relay_loop(ctx), "webhook-relay")

    async def stop(runtime: Runtime) -> None:
        ctx = getattr(app.state, "issuance", None)
        if ctx is not None:
            await ctx.hotdb.close()
            ctx.kdf.close()

    app = build_service_app(
        settings=settings,
        service="issuance",
        title="e-SSC issuance service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("identity", "settlement"),
        routers=[ecards_router, qrcodes_router, h5_router, scans_router, internal_router],
        on_startup=[start],
        on_shutdown=[stop],
        openapi_tags=TAGS,
        idempotency_table=idempotency_record,
    )
    app.state.issuance_metrics = IssuanceMetrics.register(app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory issuance.main:app_from_env``
    """
    return create_app(IssuanceSettings())
