"""Bodies of ``POST /v1/scans`` (API.md "Scanning")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.validation import CleanStr, RequestModel
from shared.wire import EcardStatus


class ScanCreate(RequestModel):
    qr_token: CleanStr = Field(min_length=1, max_length=1024)
    purpose: Literal["identity", "settlement"]


class ScanHolder(BaseModel):
    name_masked: str
    id_number_masked: str
    gender: Literal["male", "female"]
    insured_region: str
    card_status: EcardStatus


class ScanRead(BaseModel):
    scan_id: str
    holder: ScanHolder
    sign_level: int
    settlement_token: str | None = Field(
        default=None,
        description="One use, 40 characters, 10 minutes: hospitals, purpose=settlement, "
        "payment codes only.",
    )
    expires_at: datetime = Field(
        description="When the settlement token expires (else when the scanned code did)."
    )
