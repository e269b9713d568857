"""Typed settings of the identity service (environment prefix ``IDENTITY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    """Everything the identity service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///var/identity.db"
    keys_dir: Path = Path("var/keys/identity")
