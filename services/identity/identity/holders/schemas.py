"""Request and response shapes of holder import and the internal holder profile."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.config import JsonDict

from identity.docs import FieldError
from identity.holders.fields import CardNumber, IdNumber, PersonName, Phone
from shared.money import Fen
from shared.validation import RegionCode, RequestModel

InsuranceTypeName = Literal["employee", "retired", "resident"]
ImportCardStatus = Literal["active", "lost", "suspended", "cancelled"]


class HolderRow(RequestModel):
    """One holder and their physical card, as ops import them."""

    name: PersonName
    id_number: IdNumber
    phone: Phone
    card_number: CardNumber
    region_code: RegionCode = Field(description="Insured region and the card's issuing region.")
    insurance_type: InsuranceTypeName = "employee"
    card_status: ImportCardStatus = "active"
    account_balance: Fen | None = Field(
        default=None, description="Opening personal-account balance in yuan (decimal string)."
    )


_ROW_EXAMPLE: JsonDict = {
    "name": "张三",
    "id_number": "360426199101010071",
    "phone": "13800138000",
    "card_number": "A12345678",
    "region_code": "360500",
    "insurance_type": "employee",
    "card_status": "active",
    "account_balance": "1200.00",
}

# Rows are validated one by one (per-row errors, not one 422 for the whole batch), so the
# body is parsed as plain objects; the documented schema is still HolderRow's.
_ROW_SCHEMA = {
    k: v for k, v in HolderRow.model_json_schema().items() if k not in ("title", "$defs")
}


class HolderImport(RequestModel):
    """Up to 1000 holders; idempotent by ID number."""

    holders: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, max_length=1000),
        WithJsonSchema({"type": "array", "minItems": 1, "maxItems": 1000, "items": _ROW_SCHEMA}),
    ]

    model_config = ConfigDict(json_schema_extra={"examples": [{"holders": [_ROW_EXAMPLE]}]})


class RowRejection(BaseModel):
    index: int = Field(examples=[2])
    errors: list[FieldError]


class HolderImportResult(BaseModel):
    """Counts of the batch and the rows refused (nothing of a refused row is written)."""

    created: int = Field(examples=[998])
    updated: int = Field(examples=[0])
    unchanged: int = Field(default=0, examples=[1])
    rejected: list[RowRejection] = Field(
        examples=[
            [{"index": 2, "errors": [{"field": "id_number", "message": "must be a valid ..."}]}]
        ]
    )
