"""Typed settings of the issuance service (environment prefix ``ISSUANCE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IssuanceSettings(ServiceSettings):
    """Everything the issuance service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ISSUANCE_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/issuance.db"
    keys_dir: Path = Path("var/keys/issuance")
    # Field-encryption and pairwise-id keys; default: ``<keys_dir>/data.json``.
    data_keys_file: Path | None = None

    # E-cards
    ecard_validity_days: int = Field(default=5 * 365, ge=1, le=20 * 365)
    credential_lifetime_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    pin_max_failures: int = Field(default=5, ge=1, le=20)
    # scrypt work factor for PINs (2**14: ~50 ms on this machine; see README "Issuance").
    pin_scrypt_log2_n: int = Field(default=14, ge=10, le=20)
    # Threads hashing PINs at once (shared.kdf): each holds 16 MiB while it runs.
    kdf_threads: int = Field(default=2, ge=1, le=64)
    # Whether a PIN may be set only after identity confirmed it is not part of the ID number
    # (``POST /internal/v1/holders/{ref}/pin-check``). Keep True; False only lets a cluster
    # whose identity lacks that check still set PINs (logged as a warning each time).
    pin_id_check_required: bool = True

    # QR codes
    qr_lifetime_seconds: int = Field(default=60, ge=2, le=60)
    qr_refresh_margin_seconds: int = Field(default=5, ge=1, le=30)
    qr_leeway_seconds: int = Field(default=5, ge=0, le=30)
    qr_rate_limit: str = "30/minute"
    settlement_token_seconds: int = Field(default=600, ge=10, le=3600)

    # The e-card web page
    h5_session_seconds: int = Field(default=600, ge=10, le=3600)

    # Background loops
    event_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    event_page_size: int = Field(default=100, ge=1, le=1000)
    webhook_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_backoff_base_seconds: float = Field(default=2.0, gt=0, le=600)
    webhook_backoff_cap_seconds: float = Field(default=600.0, gt=0, le=86400)
    webhook_batch_size: int = Field(default=20, ge=1, le=500)
    client_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    background_tasks: bool = True

    @property
    def data_keys_path(self) -> Path:
        return self.data_keys_file or self.keys_dir / "data.json"
