"""The identity service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from identity.cards.router import router as cards_router
from identity.clients.router import router as clients_router
from identity.config import IdentitySettings
from identity.events.router import router as events_router
from identity.holders.router import router as holders_router
from identity.models import idempotency_record
from identity.oauth.router import router as oauth_router
from identity.state import build_state
from identity.verifications.router import router as verifications_router
from shared.app import Runtime, build_service_app

KEY_PURPOSES = ("access", "identity-assertion")

DESCRIPTION = (
    "Who is who: card holders and their physical cards, partner apps, hospitals, real-name "
    "verification, the signing keys and JWKS."
)

TAGS = [
    {"name": "auth", "description": "OAuth 2.0 client credentials and server metadata."},
    {"name": "verification", "description": "Real-name verification (partner apps)."},
    {"name": "operations", "description": "Clients, holders and cards (`ops` scope)."},
    {"name": "internal", "description": "Service-to-service; never routed by the gateway."},
]


def create_app(settings: IdentitySettings) -> FastAPI:
    """Build the identity app; nothing is opened until its lifespan starts."""
    app: FastAPI | None = None

    async def startup(runtime: Runtime) -> None:
        assert app is not None
        app.state.identity = await build_state(settings, runtime)
        runtime.idempotency_cipher = app.state.identity.data_keys.cipher
        runtime.readiness["rate_limits"] = app.state.identity.limiter.ping

    async def shutdown(runtime: Runtime) -> None:
        state = getattr(app.state, "identity", None) if app is not None else None
        if state is not None:
            state.kdf.close()

    app = build_service_app(
        settings=settings,
        service="identity",
        title="e-SSC identity service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("issuance", "settlement"),
        routers=[
            oauth_router,
            verifications_router,
            clients_router,
            holders_router,
            cards_router,
            events_router,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
        openapi_tags=TAGS,
        idempotency_table=idempotency_record,
    )
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory identity.main:app_from_env``
    """
    return create_app(IdentitySettings())
