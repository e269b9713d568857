"""Sending one-time codes by SMS: the interface and the development outbox implementation.

Production plugs a carrier gateway behind :class:`SmsSender`. The development
sender writes each message to the ``sms_message`` table in the request's own
transaction (the phone encrypted, found by its blind index) so that ops can
read it at ``GET /v1/admin/sms-outbox`` outside production.
"""

from __future__ import annotations

import uuid
from typing import Protocol, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import SmsMessage
from identity.timeutil import now as utcnow
from shared.fieldcrypto import DataKeys

T = cast(Table, SmsMessage.__table__)


class SmsSender(Protocol):
    """Delivers one text to one phone."""

    async def send(self, session: AsyncSession, *, phone: str, text: str, code: str) -> None: ...


class OutboxSmsSender:
    """Writes the message to the SMS outbox table (development and test)."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    async def send(self, session: AsyncSession, *, phone: str, text: str, code: str) -> None:
        message_id = uuid.uuid4().hex
        await session.execute(
            insert(T).values(
                id=message_id,
                phone_enc=self.keys.cipher.encrypt(
                    phone, table="sms_message", column="phone", row=message_id
                ),
                phone_bidx=self.keys.index.digest(phone, purpose="phone"),
                text=text,
                code=code,
                sent_at=utcnow(),
            )
        )


async def outbox_for(
    session: AsyncSession, keys: DataKeys, phone: str, limit: int = 20
) -> list[SmsMessage]:
    """The latest messages sent to ``phone``, newest first."""
    rows = await session.scalars(
        select(SmsMessage)
        .where(SmsMessage.phone_bidx == keys.index.digest(phone, purpose="phone"))
        .order_by(SmsMessage.sent_at.desc())
        .limit(limit)
    )
    return list(rows)
