"""All SQL of e-cards and spent identity assertions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuance.dbops import insert_or_nothing
from issuance.models import Ecard, UsedAssertion
from shared.db import Database


async def get_linked(
    session: AsyncSession, ecard_id: str, client_id: str, *, for_update: bool = False
) -> Ecard | None:
    """The e-card ``ecard_id`` if it belongs to ``client_id`` and is still linked."""
    stmt = select(Ecard).where(
        Ecard.ecard_id == ecard_id,
        Ecard.partner_client_id == client_id,
        Ecard.link_key.is_not(None),
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_link(session: AsyncSession, link_key: str) -> Ecard | None:
    stmt = select(Ecard).where(Ecard.link_key == link_key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_id(session: AsyncSession, ecard_id: str) -> Ecard | None:
    return (
        await session.execute(select(Ecard).where(Ecard.ecard_id == ecard_id))
    ).scalar_one_or_none()


async def get_by_seq(session: AsyncSession, seq: int) -> Ecard | None:
    return await session.get(Ecard, seq)


async def linked_for_card(session: AsyncSession, holder_ref: str, card_ref: str) -> Sequence[Ecard]:
    """Every linked e-card of ``holder_ref`` that follows physical card ``card_ref``, locked."""
    stmt = (
        select(Ecard)
        .where(
            Ecard.holder_ref == holder_ref,
            Ecard.card_ref == card_ref,
            Ecard.link_key.is_not(None),
        )
        .order_by(Ecard.seq)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalars().all()


async def linked_for_holder(session: AsyncSession, holder_ref: str) -> Sequence[Ecard]:
    stmt = (
        select(Ecard)
        .where(Ecard.holder_ref == holder_ref, Ecard.link_key.is_not(None))
        .order_by(Ecard.seq)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalars().all()


async def sign_no_taken(session: AsyncSession, sign_no: str) -> bool:
    stmt = select(Ecard.seq).where(Ecard.sign_no == sign_no)
    return (await session.execute(stmt)).first() is not None


async def spend_assertion(session: AsyncSession, jti: str, expires_at: datetime) -> bool:
    """Record an identity assertion as used; False if it already was."""
    table = UsedAssertion.__table__
    return await insert_or_nothing(
        session, table, {"jti": jti, "expires_at": expires_at}, table.c.jti
    )


async def claim_pin_attempt(db: Database, seq: int, max_failures: int) -> int | None:
    """Count one PIN attempt *before* checking it, in its own committed transaction.

    Returns the attempts now counted, or None when the e-card is already locked. Counting
    first means concurrent guesses cannot overrun the limit, and a refused request (whose
    own transaction rolls back) still leaves its attempt counted.
    """
    async with db.sessionmaker() as session, session.begin():
        result = await session.execute(
            update(Ecard)
            .where(Ecard.seq == seq, Ecard.pin_failures < max_failures)
            .values(pin_failures=Ecard.pin_failures + 1)
            .returning(Ecard.pin_failures)
        )
        row = result.first()
    return None if row is None else int(row[0])


async def reset_pin_attempts(session: AsyncSession, seq: int) -> None:
    await session.execute(update(Ecard).where(Ecard.seq == seq).values(pin_failures=0))
