"""Wire shapes of policies: the parameters ops load and hospitals read.

Ratios are decimal strings with at most four decimals between 0 and 1 (the national
interface's decimal(5,4)); amounts are the contract's money strings.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from settlement.calculator import format_ratio
from shared.money import Fen
from shared.validation import RequestModel, ShortText

VisitType = Literal["outpatient", "inpatient"]
AgeBand = Literal["under_45", "from_45", "retired"]

_RATIO = re.compile(r"^(0(\.\d{1,4})?|1(\.0{1,4})?)$")


def parse_ratio(value: object) -> Decimal:
    """A decimal string in [0, 1] with at most four decimals → Decimal."""
    if not isinstance(value, str) or not _RATIO.match(value):
        raise ValueError('must be a decimal string between "0" and "1" with at most four decimals')
    return Decimal(value)


Ratio = Annotated[
    Decimal,
    BeforeValidator(parse_ratio),
    PlainSerializer(format_ratio, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _RATIO.pattern, "examples": ["0.8500"]}),
]


class ByLevel(RequestModel):
    """An amount per hospital level (1 = community, 3 = tertiary)."""

    level_1: Fen
    level_2: Fen
    level_3: Fen


class RatioByBand(RequestModel):
    """A fund ratio per age band: under 45, 45 and over (in work), retired."""

    under_45: Ratio
    from_45: Ratio
    retired: Ratio


class RatioByLevel(RequestModel):
    level_1: RatioByBand
    level_2: RatioByBand
    level_3: RatioByBand


class DeductibleTable(RequestModel):
    """The yearly deductible (起付线) by visit type and hospital level."""

    outpatient: ByLevel
    inpatient: ByLevel


class RatioTable(RequestModel):
    """The pooled fund's ratio by visit type, hospital level and age band."""

    outpatient: RatioByLevel
    inpatient: RatioByLevel


class PolicyParams(RequestModel):
    """One region's parameters for one year."""

    name: ShortText
    deductible: DeductibleTable
    fund_ratio: RatioTable
    class_b_self_pay: Ratio = Field(description="Share of a class-B line the holder pays first.")
    annual_cap: Fen = Field(description="Most the pooled fund pays for one holder in a year.")
    account_may_pay: bool = Field(description="Whether the personal account may pay the rest.")


class PolicyLoad(PolicyParams):
    """``PUT /v1/admin/policies/{region_code}``: a new version for ``year``."""

    year: int = Field(ge=2000, le=2100)


class PolicyRead(PolicyParams):
    """The policy in force for a region: the latest version of the latest year loaded."""

    region_code: str
    region_name: str | None
    year: int
    version: int
    source: str
    loaded_at: datetime


class PolicyLoaded(BaseModel):
    """What a load did: ``created`` is false when the same parameters were already current."""

    region_code: str
    year: int
    version: int
    created: bool
