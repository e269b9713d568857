"""Typed settings common to every service; each service subclasses with its own env prefix.

Nothing reads the environment at import time: a service's ``create_app`` takes a
settings object, and only its ``app_from_env`` factory (what uvicorn calls)
builds one from the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class PlatformSettings(BaseSettings):
    """Settings every part of the cluster shares (the gateway included)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    log_requests: bool = True

    keys_dir: Path = Path("var/keys/service")
    # The platform's public issuer identifier (the gateway's public base URL).
    public_issuer: str = "http://127.0.0.1:8000"
    redis_url: str | None = None

    # Internal base URLs of the other parts, for JWKS and service-to-service calls.
    gateway_url: str = "http://127.0.0.1:8000"
    identity_url: str = "http://127.0.0.1:8001"
    issuance_url: str = "http://127.0.0.1:8002"
    settlement_url: str = "http://127.0.0.1:8003"

    jwks_cache_seconds: float = Field(default=300, ge=1, le=3600)
    jwks_min_refresh_seconds: float = Field(default=10, ge=0, le=600)
    upstream_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)
    # Request headers: total bytes (names and values) and count; more is a 431 problem.
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    max_headers: int = Field(default=100, ge=10, le=1000)
    # After SIGTERM: seconds to keep serving with /readyz at 503 before closing the listener.
    shutdown_drain_seconds: float = Field(default=0.0, ge=0, le=120)

    @field_validator(
        "public_issuer", "gateway_url", "identity_url", "issuance_url", "settlement_url"
    )
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


class ServiceSettings(PlatformSettings):
    """Settings of a backend service (with a database). Subclasses set their env prefix."""

    database_url: str = "sqlite+aiosqlite:///var/service.db"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    # Test each pooled connection with a round trip before use (catches connections the
    # server dropped while idle, at one round trip per request).
    db_pre_ping: bool = True
    # Expired Idempotency-Key records are deleted this often (0: never, e.g. a dedicated job).
    idempotency_purge_seconds: float = Field(default=3600.0, ge=0, le=86_400)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
