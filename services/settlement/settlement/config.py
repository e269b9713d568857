"""Typed settings of the settlement service (environment prefix ``SETTLEMENT_``).

Risk thresholds live here so that ops can tune them per deployment without a
release; every rule's score and trigger is named after the setting it reads.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    """Everything the settlement service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/settlement.db"
    keys_dir: Path = Path("var/keys/settlement")
    # Every hot request holds a connection for its whole transaction (including the call to
    # issuance): a pool smaller than the concurrency makes SQLAlchemy open and drop overflow
    # connections on every request (measured: ~5% of the CPU at 16 concurrent hospitals).
    db_pool_size: int = Field(default=24, ge=1, le=200)
    # No ping per checkout (two round trips per journey): a connection the server dropped
    # while idle fails its one request as a 503 (nothing written; the hospital retries with
    # its Idempotency-Key) and is discarded by the pool.
    db_pre_ping: bool = False

    # Quotes (pre-settlement) are valid this long; the settlement token lives as long.
    quote_ttl_seconds: int = Field(default=600, ge=10, le=3600)
    # Business day and year (reconciliation dates, annual totals): China Standard Time.
    business_utc_offset_hours: int = Field(default=8, ge=-12, le=14)
    # Policies are cached in-process this long (a newly loaded version applies after it).
    policy_cache_seconds: float = Field(default=5.0, ge=0, le=300)

    # Identity's event feed (holder.upserted opens accounts).
    consume_events: bool = True
    event_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # An empty feed is polled less and less often, up to this period.
    event_idle_max_seconds: float = Field(default=5.0, gt=0, le=300)
    event_page_size: int = Field(default=200, ge=1, le=1000)
    # The whole-ledger check behind essc_ledger_imbalance runs this often per process (0: only
    # when an operator asks, GET /v1/admin/ledger/check). Full scans: keep it minutes apart.
    ledger_check_seconds: float = Field(default=900.0, ge=0, le=86_400)

    # Risk rules: each rule that fires adds its score; at or above hold_score → 422 risk-review.
    risk_hold_score: int = Field(default=100, ge=1)
    risk_travel_max_kmh: float = Field(default=600.0, gt=0)
    risk_travel_min_km: float = Field(default=100.0, ge=0)
    risk_travel_score: int = Field(default=100, ge=0)
    risk_daily_max_settlements: int = Field(default=6, ge=1)
    risk_daily_score: int = Field(default=60, ge=0)
    risk_holder_z: float = Field(default=4.0, gt=0)
    risk_holder_min_samples: int = Field(default=5, ge=2)
    risk_holder_score: int = Field(default=40, ge=0)
    risk_hospital_z: float = Field(default=6.0, gt=0)
    risk_hospital_min_samples: int = Field(default=20, ge=2)
    risk_hospital_score: int = Field(default=30, ge=0)
    # Amounts below this never count as outliers (a 5-yuan bill among 3-yuan bills is no fraud).
    risk_outlier_min_fen: int = Field(default=50_000, ge=0)
    risk_failures_max: int = Field(default=3, ge=1)
    risk_failures_window_minutes: int = Field(default=60, ge=1)
    risk_failures_score: int = Field(default=40, ge=0)

    # Test-only fault injection (honoured only when environment is "test").
    fault_injection: bool = False
