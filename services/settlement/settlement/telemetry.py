"""The settlement service's business metrics, registered on the service's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from shared.metrics import Metrics


@dataclass(frozen=True)
class SettlementMetrics:
    settlements: Counter
    refunds: Counter
    risk_alerts: Counter
    replays: Counter
    ledger_imbalance: Gauge

    @classmethod
    def register(cls, metrics: Metrics) -> SettlementMetrics:
        return cls(
            settlements=metrics.counter(
                "essc_settlements_total",
                "Settlement attempts by outcome and insured region.",
                ["outcome", "region"],
            ),
            refunds=metrics.counter(
                "essc_refunds_total",
                "Refunds by outcome and insured region.",
                ["outcome", "region"],
            ),
            risk_alerts=metrics.counter(
                "essc_risk_alerts_total", "Risk alerts raised, by rule that fired.", ["rule"]
            ),
            replays=metrics.idempotent_replays(),
            ledger_imbalance=metrics.gauge(
                "essc_ledger_imbalance",
                "Problems the last whole-ledger check found (must stay 0).",
            ),
        )
