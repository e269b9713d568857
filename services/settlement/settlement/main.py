"""The settlement service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from settlement.accounts import router as accounts_router
from settlement.config import SettlementSettings
from settlement.deps import Parts
from settlement.events import consumer
from settlement.ledger import router as ledger_router
from settlement.ledger import service as ledger_service
from settlement.models import IDEMPOTENCY
from settlement.policies import router as policies_router
from settlement.policies.service import PolicyCache
from settlement.quotes import router as quotes_router
from settlement.reconciliation import router as reconciliation_router
from settlement.risk import router as risk_router
from settlement.settlements import router as settlements_router
from settlement.telemetry import SettlementMetrics
from shared.app import Runtime, build_service_app
from shared.idempotency import Idempotency, purge_loop

KEY_PURPOSES = ()

DESCRIPTION = (
    "The money: medical-insurance pre-settlement and settlement, refunds, a double-entry "
    "ledger, reconciliation, self-service enquiry, fraud rules."
)


def create_app(settings: SettlementSettings) -> FastAPI:
    """Build the settlement app; nothing is opened until its lifespan starts."""

    async def start_loops(runtime: Runtime) -> None:
        if settings.consume_events:
            runtime.spawn(consumer.run(runtime, settings), "identity-events")
        if settings.idempotency_purge_seconds:
            runtime.spawn(
                purge_loop(runtime.db.engine, IDEMPOTENCY, settings.idempotency_purge_seconds),
                "idem-purge",
            )
        if settings.ledger_check_seconds:
            parts: Parts = app.state.parts
            runtime.spawn(
                ledger_service.check_loop(
                    runtime.db,
                    parts.metrics.ledger_imbalance,
                    settings.ledger_check_seconds,
                    parts.now,
                ),
                "ledger-check",
            )

    app = build_service_app(
        settings=settings,
        service="settlement",
        title="e-SSC settlement service",
        description=DESCRIPTION,
        key_purposes=KEY_PURPOSES,
        public_key_purposes=KEY_PURPOSES,
        peers=("identity", "issuance"),
        # The hot routes first: FastAPI matches routes in order (measured a few % of the CPU).
        routers=[
            quotes_router.router,
            settlements_router.router,
            policies_router.router,
            reconciliation_router.router,
            accounts_router.router,
            accounts_router.internal,
            policies_router.admin,
            accounts_router.admin,
            risk_router.router,
            ledger_router.router,
        ],
        on_startup=[start_loops],
    )
    app.state.parts = Parts(
        settings=settings,
        metrics=SettlementMetrics.register(app.state.metrics),
        policies=PolicyCache(settings.policy_cache_seconds),
        idempotency=Idempotency(IDEMPOTENCY),
    )
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory, settings from the environment.

    ``uvicorn --factory settlement.main:app_from_env``
    """
    return create_app(SettlementSettings())
