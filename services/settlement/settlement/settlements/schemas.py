"""Wire shapes of settlements and refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from settlement.quotes.schemas import LineRead, TotalsRead
from shared.validation import CleanStr, RequestModel


class SettlementCreate(RequestModel):
    """``POST /v1/settlements`` (with a required ``Idempotency-Key``)."""

    quote_id: Annotated[CleanStr, Field(min_length=1, max_length=40)]


class RefundCreate(RequestModel):
    """``POST /v1/settlements/{settlement_id}/refunds`` (with a required ``Idempotency-Key``)."""

    reason: Annotated[CleanStr, Field(min_length=1, max_length=500)]


class RefundBrief(BaseModel):
    refund_id: str
    refunded_at: datetime
    reason: str


class SettlementRead(BaseModel):
    """A settlement; ``totals`` are the quote's, now posted to the ledger."""

    settlement_id: str
    status: Literal["settled", "refunded"]
    quote_id: str
    insured_region: str
    treatment_region: str
    cross_region: bool
    totals: TotalsRead
    settled_at: datetime
    risk_flags: list[str] = Field(description="Risk rules that fired below the hold threshold.")
    lines: list[LineRead] | None = None
    refund: RefundBrief | None = None


class RefundRead(BaseModel):
    """A refund: the whole settlement reversed (``totals`` are the amounts returned)."""

    refund_id: str
    settlement_id: str
    status: Literal["refunded"] = "refunded"
    totals: TotalsRead
    refunded_at: datetime
    reason: str
