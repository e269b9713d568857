"""All SQL about registered clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Client


async def get(session: AsyncSession, client_id: str) -> Client | None:
    return await session.get(Client, client_id)


async def by_name(session: AsyncSession, name: str, kind: str) -> Client | None:
    rows = await session.scalars(select(Client).where(Client.name == name, Client.kind == kind))
    return rows.first()


async def add(session: AsyncSession, client: Client) -> None:
    session.add(client)
    await session.flush()


async def disable(session: AsyncSession, client_id: str, ts: datetime) -> None:
    await session.execute(
        update(Client)
        .where(Client.client_id == client_id, Client.status == "active")
        .values(status="disabled", disabled_at=ts)
    )


async def disabled_ids(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Client.client_id).where(Client.status == "disabled").order_by(Client.client_id)
    )
    return list(rows)


async def store_jwks(
    session: AsyncSession, client_id: str, jwks: dict[str, Any], ts: datetime
) -> None:
    await session.execute(
        update(Client).where(Client.client_id == client_id).values(jwks=jwks, jwks_fetched_at=ts)
    )
