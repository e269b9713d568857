"""Wire shapes of pre-settlement: the bill in, the itemised split out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from settlement.policies.schemas import AgeBand, VisitType
from settlement.risk.schemas import RiskRead
from shared.money import Fen, FenOut, Quantity, parse_fen
from shared.validation import CleanStr, RequestModel, ShortText

Code = Annotated[CleanStr, Field(min_length=1, max_length=64)]


def _stored_fen(value: object) -> object:
    """Stored answers hold the wire's strings: read ``"12.30"`` back as 1230 fen."""
    if isinstance(value, str):
        return -parse_fen(value[1:]) if value.startswith("-") else parse_fen(value)
    return value


Money = Annotated[FenOut, BeforeValidator(_stored_fen)]
"""A response amount that also reads back from a stored answer (int fen or the wire string)."""


class Visit(RequestModel):
    type: VisitType
    department: Annotated[CleanStr, Field(max_length=64)] | None = None
    diagnosis_code: Annotated[CleanStr, Field(max_length=32)] | None = None


class BillLine(RequestModel):
    """One line of the bill (fee detail, as in national code 2204)."""

    code: Code = Field(description="Catalogue code of the drug, test or service.")
    name: ShortText
    category: Literal["A", "B", "C"] = Field(description="Class A, B or C (甲/乙/丙类).")
    quantity: Quantity
    unit_price: Fen
    price_cap: Fen | None = Field(
        default=None, description="Highest unit price the fund recognises; above it is self-paid."
    )


class QuoteCreate(RequestModel):
    """``POST /v1/settlements/quotes``."""

    settlement_token: Annotated[CleanStr, Field(min_length=40, max_length=40)]
    visit: Visit
    items: list[BillLine] = Field(min_length=1, max_length=500)


class TotalsRead(BaseModel):
    """The split in yuan; ``fund_pay + account_pay + cash_pay == total`` exactly."""

    total: Money
    fully_self_paid: Money
    over_cap: Money
    class_b_self_pay: Money
    in_scope: Money
    deductible: Money
    fund_pay: Money
    fund_ratio: str = Field(examples=["0.8500"])
    account_pay: Money
    cash_pay: Money


class LineRead(BaseModel):
    """One line's own breakdown; its parts add up to ``amount``."""

    code: str
    name: str
    category: Literal["A", "B", "C"]
    amount: Money
    self_paid: Money = Field(description="Fully self-paid + over the price cap + class-B share.")
    fully_self_paid: Money
    over_cap: Money
    class_b_self_pay: Money
    in_scope: Money
    deductible: Money
    fund_pay: Money
    account_pay: Money
    cash_pay: Money
    reason: str


class PolicyRef(BaseModel):
    region_code: str
    year: int
    version: int


class QuoteRead(BaseModel):
    """The pre-settlement answer (also stored with the quote and shown by the settlement)."""

    quote_id: str
    expires_at: datetime
    insured_region: str
    treatment_region: str
    cross_region: bool
    visit_type: VisitType
    hospital_level: int
    age_band: AgeBand
    policy: PolicyRef
    totals: TotalsRead
    lines: list[LineRead]
    rules: list[str]
    risk: RiskRead
    status: Literal["quoted"] = "quoted"
