"""Fixtures of the issuance tests: the service in process against fake peers (SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from support.issuance_env import IssuanceEnv, issuance_env


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[IssuanceEnv]:
    async with issuance_env(tmp_path) as e:
        yield e
