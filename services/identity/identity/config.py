"""Typed settings of the identity service (environment prefix ``IDENTITY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    """Everything the identity service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/identity.db"
    keys_dir: Path = Path("var/keys/identity")

    # Lifetimes (seconds) of what identity signs and of one-time codes.
    access_token_ttl_seconds: int = Field(default=600, ge=30, le=600)
    identity_assertion_ttl_seconds: int = Field(default=300, ge=30, le=300)
    otp_ttl_seconds: int = Field(default=300, ge=30, le=900)
    otp_max_attempts: int = Field(default=5, ge=1, le=10)

    # Face attestations: minimum liveness and match scores of a registered provider.
    face_min_liveness: float = Field(default=0.90, ge=0.0, le=1.0)
    face_min_match: float = Field(default=0.85, ge=0.0, le=1.0)

    # Rate limits (``limits`` syntax); Redis shared by replicas when IDENTITY_REDIS_URL is set.
    verification_rate_per_client: str = "600/minute"
    verification_rate_per_id_number: str = "10/hour"
    confirm_rate_per_client: str = "1200/minute"

    # A client's jwks_uri must be https on a public address. Tests may allow http/loopback.
    allow_insecure_jwks_uri: bool = False
    jwks_uri_timeout_seconds: float = Field(default=3.0, gt=0, le=10)
    jwks_uri_max_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    jwks_uri_min_refresh_seconds: float = Field(default=60.0, ge=0, le=3600)

    # scrypt cost of sandbox client secrets (2**14 ≈ 50 ms, 16 MiB).
    secret_scrypt_n: int = Field(default=2**14, ge=2**10, le=2**20)
    # Threads hashing secrets at once (shared.kdf): each holds 16 MiB while it runs.
    kdf_threads: int = Field(default=2, ge=1, le=64)

    @property
    def data_keys_path(self) -> Path:
        """The data-encryption and blind-index keys (``<keys_dir>/data.json``)."""
        return self.keys_dir / "data.json"
