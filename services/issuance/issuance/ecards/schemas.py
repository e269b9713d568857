"""Request and response bodies of the e-card routes (API.md "E-cards")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from shared.validation import CleanStr, RequestModel
from shared.wire import EcardStatus

Pin = Annotated[str, Field(pattern=r"^\d{6}$", examples=["135790"], description="Six digits.")]
Token = Annotated[CleanStr, Field(min_length=1, max_length=4096)]


class EcardCreate(RequestModel):
    identity_assertion: Token


class PinUpdate(RequestModel):
    """``old_pin`` is required to change a PIN that is set, unless a fresh
    ``identity_assertion`` for the same holder through the same app authorises a reset
    (which also lifts a payment lock)."""

    pin: Pin
    old_pin: Pin | None = None
    identity_assertion: Token | None = None


class PaymentEnable(RequestModel):
    pin: Pin


class HolderRead(BaseModel):
    pairwise_id: str
    name_masked: str
    id_number_masked: str


class EcardRead(BaseModel):
    ecard_id: str
    sign_no: str
    sign_seq: int
    sign_level: int = Field(ge=1, le=2)
    status: EcardStatus
    region_code: str
    holder: HolderRead
    issued_at: datetime
    valid_until: datetime
    pin_set: bool
    payment_locked: bool
    credential: str = Field(
        description="ES256 JWT (typ essc-ecard+jwt): sub is the pairwise id, aud this app."
    )
