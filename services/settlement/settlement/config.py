"""Typed settings of the settlement service (environment prefix ``SETTLEMENT_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    """Everything the settlement service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SETTLEMENT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/settlement.db"
    keys_dir: Path = Path("var/keys/settlement")
