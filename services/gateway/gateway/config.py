"""Typed settings of the gateway (environment prefix ``GATEWAY_``).

``GATEWAY_IDENTITY_URL``, ``GATEWAY_ISSUANCE_URL`` and ``GATEWAY_SETTLEMENT_URL``
may each list several replicas, comma-separated; the gateway balances across them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import PlatformSettings


class GatewaySettings(PlatformSettings):
    """Everything the gateway reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    keys_dir: Path = Path("var/keys/gateway")
    # Overall deadline of one forwarded request, and of connecting to an upstream.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    upstream_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    upstream_pool_size: int = Field(default=256, ge=1, le=4096)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    # Circuit breaker per upstream replica.
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_open_seconds: float = Field(default=5.0, gt=0, le=600)
    # Per-client budgets ("limits" notation), keyed by the verified client id; the public
    # routes (token endpoint, e-card web page) are budgeted per client address.
    rate_limit_client: str = "200/second"
    rate_limit_public: str = "50/second"
    # How often the set of disabled clients is refreshed from identity.
    disabled_clients_poll_seconds: float = Field(default=3.0, gt=0, le=300)
    # Cache of the upstreams' OpenAPI documents merged into the public one.
    openapi_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
