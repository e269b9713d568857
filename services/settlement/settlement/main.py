"""The settlement service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from settlement.config import SettlementSettings
from shared.app import build_service_app

KEY_PURPOSES = ()

DESCRIPTION = (
    "The money: medical-insurance pre-settlement and settlement, refunds, a double-entry "
    "ledger, reconciliation, self-service enquiry, fraud rules."
)


def create_app(settings: SettlementSettings) -> FastAPI:
    """Build the settlement app; nothing is opened until its lifespan starts."""
    return build_service_app(
        settings=settings,
        service="settlement",
        title="e-SSC settlement service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("identity", "issuance"),
        routers=[],
    )


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory settlement.main:app_from_env``
    """
    return create_app(SettlementSettings())
