"""Typed settings of the issuance service (environment prefix ``ISSUANCE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IssuanceSettings(ServiceSettings):
    """Everything the issuance service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ISSUANCE_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/issuance.db"
    keys_dir: Path = Path("var/keys/issuance")
