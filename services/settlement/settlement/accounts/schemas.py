"""Wire shapes of personal accounts and holders' settlement history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from shared.money import Fen, FenOut
from shared.validation import CleanStr, RequestModel


class AccountRead(BaseModel):
    """``GET /v1/ecards/{ecard_id}/account``: the holder's account and this year's totals."""

    ecard_id: str
    insured_region: str
    opened: bool = Field(description="Whether the platform has opened the holder's account yet.")
    balance: FenOut
    year: int
    deductible_used: FenOut
    fund_paid: FenOut
    cap_remaining: FenOut | None = Field(description="null when no policy is loaded.")


class HolderSettlement(BaseModel):
    settlement_id: str
    settled_at: datetime
    hospital: str
    treatment_region: str
    cross_region: bool
    total: FenOut
    fund_pay: FenOut
    account_pay: FenOut
    cash_pay: FenOut
    status: Literal["settled", "refunded"]
    refunded_at: datetime | None


class HolderSettlementPage(BaseModel):
    items: list[HolderSettlement]
    next_cursor: str | None


class TopUpCreate(RequestModel):
    """``POST /v1/admin/holders/{holder_ref}/top-ups``: credit a personal account (ops)."""

    amount: Fen
    reference: Annotated[CleanStr, Field(min_length=1, max_length=60)] = Field(
        description="The funding batch's reference; one top-up per reference."
    )


class TopUpRead(BaseModel):
    holder_ref: str
    reference: str
    amount: FenOut
    balance: FenOut
    created: bool
