"""ORM models of the identity database: holders, physical cards, clients, verifications, outbox.

Personal data (ID number, name, phone) is stored only as AES-256-GCM ciphertext
(``*_enc``, :mod:`shared.fieldcrypto`, associated data = table/column/row/version)
and looked up through HMAC blind indexes (``*_bidx``, a separate key).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from identity.db import Base
from shared.idempotency import idempotency_table

# seq is a bigint identity on PostgreSQL and the rowid alias on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class Holder(Base):
    """A card holder. ``holder_ref`` is random, never derived from the ID number."""

    __tablename__ = "holder"

    holder_ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    id_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_bidx: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    name_enc: Mapped[bytes] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes] = mapped_column(LargeBinary)
    phone_bidx: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    gender: Mapped[str] = mapped_column(String(6))
    birth_date: Mapped[date] = mapped_column(Date)
    insured_region: Mapped[str] = mapped_column(String(6))
    insurance_type: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Card(Base):
    """A physical social security card; at most one ``active`` card per holder (partial index)."""

    __tablename__ = "card"
    __table_args__ = (
        Index(
            "uq_card_one_active_per_holder",
            "holder_ref",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    card_ref: Mapped[str] = mapped_column(String(32), primary_key=True)
    card_number: Mapped[str] = mapped_column(String(9), unique=True)
    holder_ref: Mapped[str] = mapped_column(ForeignKey("holder.holder_ref"), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CardStatusChange(Base):
    """History of a card's statuses (append-only)."""

    __tablename__ = "card_status_change"

    id: Mapped[int] = mapped_column(SeqType, Identity(), primary_key=True)
    card_ref: Mapped[str] = mapped_column(ForeignKey("card.card_ref"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(10), nullable=True)
    to_status: Mapped[str] = mapped_column(String(10))
    actor: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Client(Base):
    """A registered client: partner app, hospital, scanner, ops or face provider."""

    __tablename__ = "client"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    level: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    scopes: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(10), index=True)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(String(512), nullable=True)
    jwks_fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    secret_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    webhook_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsedAssertion(Base):
    """``jti`` of client assertions already presented, kept until the assertion expires."""

    __tablename__ = "used_assertion"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Verification(Base):
    """A real-name verification started by a partner app; the OTP is stored only as an HMAC."""

    __tablename__ = "verification"

    verification_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    holder_ref: Mapped[str] = mapped_column(ForeignKey("holder.holder_ref"))
    method: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    otp_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SmsMessage(Base):
    """What the development SMS sender 'sent' (the phone encrypted, found by blind index)."""

    __tablename__ = "sms_message"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    phone_enc: Mapped[bytes] = mapped_column(LargeBinary)
    phone_bidx: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    text: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(6))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxEvent(Base):
    """Events for issuance and settlement; ``seq`` order is commit order (advisory lock)."""

    __tablename__ = "outbox_event"

    seq: Mapped[int] = mapped_column(SeqType, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


idempotency_record = idempotency_table(Base.metadata)
