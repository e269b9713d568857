"""All SQL about policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.models import Policy
from settlement.sql import AnyRow, insert_for, table

T = table(Policy)


def region_chain(region_code: str) -> list[str]:
    """The region, its prefecture and its province (city-level pooling falls back upwards)."""
    chain = [region_code, region_code[:4] + "00", region_code[:2] + "0000"]
    return list(dict.fromkeys(chain))


async def in_force(session: AsyncSession, region_code: str, year: int) -> AnyRow | None:
    """The latest version of the latest year ≤ ``year`` for the region or its parents."""
    chain = region_chain(region_code)
    specificity = case({code: i for i, code in enumerate(chain)}, value=T.c.region_code)
    stmt = (
        select(T)
        .where(T.c.region_code.in_(chain), T.c.year <= year)
        .order_by(specificity, T.c.year.desc(), T.c.version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).first()


async def latest_version(session: AsyncSession, region_code: str, year: int) -> AnyRow | None:
    stmt = (
        select(T.c.version, T.c.params_sha256)
        .where(T.c.region_code == region_code, T.c.year == year)
        .order_by(T.c.version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).first()


async def insert_version(
    session: AsyncSession,
    *,
    region_code: str,
    year: int,
    version: int,
    name: str,
    params: dict[str, Any],
    params_sha256: str,
    source: str,
    now: datetime,
) -> bool:
    """Insert one version; False if that version number was taken meanwhile."""
    stmt = (
        insert_for(session, T)
        .values(
            region_code=region_code,
            year=year,
            version=version,
            name=name,
            params=params,
            params_sha256=params_sha256,
            source=source,
            loaded_at=now,
        )
        .on_conflict_do_nothing()
        .returning(T.c.id)
    )
    return (await session.execute(stmt)).first() is not None
