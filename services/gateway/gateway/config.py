"""Typed settings of the gateway (environment prefix ``GATEWAY_``)."""

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
