"""Wire shapes of reconciliation."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from shared.money import Fen, FenOut
from shared.validation import CleanStr, IsoDate, RequestModel


class DailyTotals(BaseModel):
    """``GET /v1/reconciliation/daily`` (3201): settlements and refunds posted that day."""

    date: dt.date
    count: int
    total: FenOut
    fund_pay: FenOut
    account_pay: FenOut
    cash_pay: FenOut
    refund_count: int
    refund_total: FenOut
    refund_fund_pay: FenOut
    refund_account_pay: FenOut
    refund_cash_pay: FenOut
    net_total: FenOut = Field(description="total − refund_total")


class CheckCreate(RequestModel):
    """``POST /v1/reconciliation/checks``: the hospital's own figures for a day."""

    date: IsoDate
    count: int = Field(ge=0, le=10_000_000)
    total: Fen
    fund_pay: Fen
    account_pay: Fen
    cash_pay: Fen
    settlement_ids: list[Annotated[CleanStr, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=100_000
    )


class Difference(BaseModel):
    """A figure that differs (``field``) or a settlement on one side only (``settlement_id``)."""

    kind: Literal["figure", "settlement"]
    field: str | None = None
    platform: str | None = None
    hospital: str | None = None
    settlement_id: str | None = None
    issue: Literal["not-in-hospital-figures", "unknown-to-platform"] | None = None


class DetailLine(BaseModel):
    """One posting of the day (3202): a settlement, or a refund with negative amounts."""

    type: Literal["settlement", "refund"]
    id: str
    settlement_id: str
    posted_at: dt.datetime
    total: FenOut
    fund_pay: FenOut
    account_pay: FenOut
    cash_pay: FenOut


class CheckRead(BaseModel):
    match: bool
    platform: DailyTotals
    differences: list[Difference]
    detail: list[DetailLine] | None = Field(
        default=None, description="The platform's detail lines, when the figures differ."
    )
