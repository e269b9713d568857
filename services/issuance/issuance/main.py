"""The issuance service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from issuance.config import IssuanceSettings
from shared.app import build_service_app

KEY_PURPOSES = ("ecard-credential", "qr")

DESCRIPTION = (
    "The e-card: issuing it through a partner app, its lifecycle, the short-lived one-time QR "
    "codes, and the scanner's exchange of a QR for identity."
)


def create_app(settings: IssuanceSettings) -> FastAPI:
    """Build the issuance app; nothing is opened until its lifespan starts."""
    return build_service_app(
        settings=settings,
        service="issuance",
        title="e-SSC issuance service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("identity", "settlement"),
        routers=[],
    )


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory issuance.main:app_from_env``
    """
    return create_app(IssuanceSettings())
