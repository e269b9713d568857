"""ORM models of the settlement database: the schema, declared once.

Hot paths query these tables through SQLAlchemy Core (``Model.__table__``) in the
feature repositories; the ORM classes are the single place the columns are named.
Money columns are ``BIGINT`` fen and end in ``_fen``. Timestamps are UTC.

Invariants the database itself enforces (see ``migrations/versions/0002_ledger.py``):

- ``account``: a personal balance is never negative (CHECK, both databases);
- ``ledger_entry``/``ledger_tx``/``settlement``/``refund``: immutable (triggers refusing
  UPDATE/DELETE/TRUNCATE on PostgreSQL, UPDATE/DELETE on SQLite);
- every ledger transaction sums to zero, checked at COMMIT by a deferred constraint trigger
  (PostgreSQL; on SQLite the ledger service checks in code before inserting);
- one ledger transaction per settlement and per refund (UNIQUE ``kind, ref``), one settlement per
  quote and per settlement token (UNIQUE), one refund per settlement (UNIQUE).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from settlement.db import Base
from shared.idempotency import idempotency_table


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# An auto-incrementing 64-bit key (SQLite needs INTEGER for its rowid alias).
AutoId = BigInteger().with_variant(Integer(), "sqlite")
Money = BigInteger

IDEMPOTENCY = idempotency_table(Base.metadata)


class Policy(Base):
    """One version of an insured region's parameters for one year (never updated, superseded)."""

    __tablename__ = "policy"
    __table_args__ = (UniqueConstraint("region_code", "year", "version"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6))
    year: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(128))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Holder(Base):
    """A card holder as identity's ``holder.upserted`` events describe them."""

    __tablename__ = "holder"

    holder_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    insured_region: Mapped[str] = mapped_column(String(6))
    insurance_type: Mapped[str] = mapped_column(String(16))
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    gender: Mapped[str | None] = mapped_column(String(8), nullable=True)
    opening_applied: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HolderYear(Base):
    """A holder's running totals for one (business) year: what the deductible and cap count."""

    __tablename__ = "holder_year"
    __table_args__ = (
        CheckConstraint("deductible_used_fen >= 0", name="deductible_nonneg"),
        CheckConstraint("fund_paid_fen >= 0", name="fund_paid_nonneg"),
    )

    holder_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    deductible_used_fen: Mapped[int] = mapped_column(Money, default=0)
    fund_paid_fen: Mapped[int] = mapped_column(Money, default=0)


class Account(Base):
    """A ledger account. ``balance_fen`` is kept only for personal accounts (NULL otherwise).

    System accounts (pooled funds, receivables, clearing, funding) are touched by every
    settlement of a region or hospital; a stored balance there would be one hot row that
    serialises the whole region. Their balance is the sum of their entries.
    """

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint(
            "kind <> 'personal' OR (balance_fen IS NOT NULL AND balance_fen >= 0)",
            name="personal_balance_nonneg",
        ),
    )

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner_ref: Mapped[str] = mapped_column(String(128))
    region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    balance_fen: Mapped[int | None] = mapped_column(Money, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerTx(Base):
    """One balanced posting: opening, top-up, settlement or refund (``ref`` is its business id)."""

    __tablename__ = "ledger_tx"
    __table_args__ = (UniqueConstraint("kind", "ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LedgerEntry(Base):
    """One leg of a ledger transaction; a positive amount is a debit, a negative one a credit."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_nonzero"),
        Index("ix_ledger_entry_account_posted", "account_id", "posted_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(ForeignKey("ledger_tx.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id"))
    amount_fen: Mapped[int] = mapped_column(Money)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Quote(Base):
    """A pre-settlement: the split computed from the state it assumed, valid for minutes."""

    __tablename__ = "quote"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hospital_client_id: Mapped[str] = mapped_column(String(128))
    hospital_level: Mapped[int] = mapped_column(Integer)
    treatment_region: Mapped[str] = mapped_column(String(6))
    settlement_token: Mapped[str] = mapped_column(String(40))
    token_sha256: Mapped[str] = mapped_column(String(64))
    ecard_id: Mapped[str] = mapped_column(String(64))
    partner_client_id: Mapped[str] = mapped_column(String(128))
    holder_ref: Mapped[str] = mapped_column(String(64))
    insured_region: Mapped[str] = mapped_column(String(6))
    policy_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("policy.id"))
    year: Mapped[int] = mapped_column(Integer)
    visit_type: Mapped[str] = mapped_column(String(16))
    cross_region: Mapped[bool] = mapped_column(Boolean)
    total_fen: Mapped[int] = mapped_column(Money)
    deductible_fen: Mapped[int] = mapped_column(Money)
    fund_pay_fen: Mapped[int] = mapped_column(Money)
    account_pay_fen: Mapped[int] = mapped_column(Money)
    cash_pay_fen: Mapped[int] = mapped_column(Money)
    assumed_balance_fen: Mapped[int] = mapped_column(Money)
    assumed_deductible_used_fen: Mapped[int] = mapped_column(Money)
    assumed_fund_paid_fen: Mapped[int] = mapped_column(Money)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Settlement(Base):
    """A committed settlement; its money is the ledger transaction ``(settlement, id)``."""

    __tablename__ = "settlement"
    __table_args__ = (
        Index("ix_settlement_hospital_settled", "hospital_client_id", "settled_at"),
        Index("ix_settlement_holder_settled", "holder_ref", "settled_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    quote_id: Mapped[str] = mapped_column(ForeignKey("quote.id"), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    hospital_client_id: Mapped[str] = mapped_column(String(128))
    holder_ref: Mapped[str] = mapped_column(String(64))
    ecard_id: Mapped[str] = mapped_column(String(64))
    insured_region: Mapped[str] = mapped_column(String(6))
    treatment_region: Mapped[str] = mapped_column(String(6))
    cross_region: Mapped[bool] = mapped_column(Boolean)
    year: Mapped[int] = mapped_column(Integer)
    total_fen: Mapped[int] = mapped_column(Money)
    deductible_fen: Mapped[int] = mapped_column(Money)
    fund_pay_fen: Mapped[int] = mapped_column(Money)
    account_pay_fen: Mapped[int] = mapped_column(Money)
    cash_pay_fen: Mapped[int] = mapped_column(Money)
    risk_score: Mapped[int] = mapped_column(Integer, default=0)
    risk_flags: Mapped[list[str]] = mapped_column(JSON)
    settled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Base):
    """The full reversal of one settlement (at most one)."""

    __tablename__ = "refund"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlement.id"), unique=True)
    hospital_client_id: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    refunded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventCursor(Base):
    """How far a consumer has read a feed; locked FOR UPDATE SKIP LOCKED by the one reader."""

    __tablename__ = "event_cursor"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    after_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessedEvent(Base):
    """Events already applied (deduplication by event id)."""

    __tablename__ = "processed_event"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RiskProfile(Base):
    """Running mean and M2 (Welford) of settled amounts per holder (``h:``) or hospital (``p:``).

    Statistics, not money: doubles are fine here.
    """

    __tablename__ = "risk_profile"

    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    mean: Mapped[float] = mapped_column(Float, default=0.0)
    m2: Mapped[float] = mapped_column(Float, default=0.0)


class RiskFailure(Base):
    """A failed settlement attempt (stale, expired, held) for the repeated-failures rule."""

    __tablename__ = "risk_failure"
    __table_args__ = (Index("ix_risk_failure_holder_at", "holder_ref", "at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    holder_ref: Mapped[str] = mapped_column(String(64))
    hospital_client_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class RiskAlert(Base):
    """A rule hit worth an operator's look: ``held`` (the settlement was refused) or ``flagged``."""

    __tablename__ = "risk_alert"
    __table_args__ = (Index("ix_risk_alert_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    holder_ref: Mapped[str] = mapped_column(String(64))
    hospital_client_id: Mapped[str] = mapped_column(String(128))
    quote_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    settlement_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(500), nullable=True)
