"""ORM models of the issuance database: e-cards, scans, settlement tokens, sessions, outboxes.

Personal data is kept only masked and still encrypted at rest (``*_enc`` columns,
:mod:`shared.fieldcrypto`, AAD bound to the e-card's ``ecard_id``). Single-use things
(identity assertions, QR jtis, settlement tokens, web-page sessions) are stored by id or by
SHA-256, never as the bearer string.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from issuance.db import Base
from shared.idempotency import idempotency_table

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
TS = DateTime(timezone=True)


class Ecard(Base):
    """One partner app's link to a holder's physical card.

    ``status`` is the effective status, kept in step with its two independent causes:
    ``app_suspended`` (the app's suspend/resume) and ``card_state`` (the physical card's
    events: active, suspended, revoked), so that resuming one never undoes the other.
    ``link_key`` is ``holder_ref|client_id`` while linked and NULL once unlinked: the
    unique constraint gives one linked e-card per holder per app.
    """

    __tablename__ = "ecard"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ecard_id: Mapped[str] = mapped_column(String(32), unique=True)
    partner_client_id: Mapped[str] = mapped_column(String(128), index=True)
    holder_ref: Mapped[str] = mapped_column(String(128), index=True)
    link_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    pairwise_id: Mapped[str] = mapped_column(String(64))
    card_ref: Mapped[str] = mapped_column(String(128))
    sign_no: Mapped[str] = mapped_column(String(32), unique=True)
    sign_seq: Mapped[int] = mapped_column(Integer)
    sign_level: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    app_suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    card_state: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str] = mapped_column(String(6))
    insured_region: Mapped[str] = mapped_column(String(6))
    insurance_type: Mapped[str] = mapped_column(String(16))
    gender: Mapped[str] = mapped_column(String(8))
    birth_date_enc: Mapped[bytes] = mapped_column(LargeBinary)
    name_masked_enc: Mapped[bytes] = mapped_column(LargeBinary)
    id_number_masked_enc: Mapped[bytes] = mapped_column(LargeBinary)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    # QR codes issued (iat) before this unix time no longer work (reissue, unlink).
    qr_not_before: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_at: Mapped[datetime] = mapped_column(TS)
    valid_until: Mapped[datetime] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS)
    unlinked_at: Mapped[datetime | None] = mapped_column(TS)

    __table_args__ = (Index("ix_ecard_holder_card", "holder_ref", "card_ref"),)


class Scan(Base):
    """One accepted scan; the unique ``jti`` is what makes a QR code single-use."""

    __tablename__ = "scan"

    scan_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    jti: Mapped[str] = mapped_column(String(24), unique=True)
    ecard_seq: Mapped[int] = mapped_column(BigInteger, index=True)
    scanner_client_id: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(16))
    qr_purpose: Mapped[str] = mapped_column(String(16))
    qr_expires_at: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)


class SettlementToken(Base):
    """A one-use token a hospital got from a payment scan; only its SHA-256 is stored."""

    __tablename__ = "settlement_token"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    scan_id: Mapped[str] = mapped_column(String(32))
    ecard_seq: Mapped[int] = mapped_column(BigInteger)
    hospital_client_id: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS)
    redeemed_at: Mapped[datetime | None] = mapped_column(TS)
    redemption_ref: Mapped[str | None] = mapped_column(String(64))


class UsedAssertion(Base):
    """Identity assertions already spent, kept until they would have expired anyway."""

    __tablename__ = "used_assertion"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(TS, index=True)


class H5Session(Base):
    """A short-lived link to the e-card web page; the bearer string is never stored."""

    __tablename__ = "h5_session"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    ecard_seq: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(TS, index=True)
    created_at: Mapped[datetime] = mapped_column(TS)


class EventCursor(Base):
    """How far this service has applied a peer's event feed (one row per feed)."""

    __tablename__ = "event_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    after_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(TS)


class ProcessedEvent(Base):
    """Event ids already applied: a redelivered event is recognised and skipped."""

    __tablename__ = "processed_event"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    processed_at: Mapped[datetime] = mapped_column(TS)


class WebhookOutbox(Base):
    """A partner webhook event, written in the transaction of the change it reports."""

    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    partner_client_id: Mapped[str] = mapped_column(String(128))
    ecard_id: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(TS)
    payload: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TS)
    delivered_at: Mapped[datetime | None] = mapped_column(TS)
    outcome: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index(
            "ix_webhook_outbox_pending",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL"),
        ),
    )


idempotency_record = idempotency_table(Base.metadata)
