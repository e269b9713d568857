"""The identity service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from identity.config import IdentitySettings
from identity.oauth.router import router as oauth_router
from shared.app import build_service_app

KEY_PURPOSES = ("access", "identity-assertion")

DESCRIPTION = (
    "Who is who: card holders and their physical cards, partner apps, hospitals, real-name "
    "verification, the signing keys and JWKS."
)


def create_app(settings: IdentitySettings) -> FastAPI:
    """Build the identity app; nothing is opened until its lifespan starts."""
    return build_service_app(
        settings=settings,
        service="identity",
        title="e-SSC identity service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("issuance", "settlement"),
        routers=[oauth_router],
    )


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory identity.main:app_from_env``
    """
    return create_app(IdentitySettings())
