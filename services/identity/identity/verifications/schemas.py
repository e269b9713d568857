"""Shapes of real-name verification and the SMS outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from identity.holders.fields import CardNumber, IdNumber, PersonName, Phone
from shared.validation import RequestModel

_EXAMPLE: JsonDict = {
    "name": "张三",
    "id_number": "360426199101010071",
    "card_number": "A12345678",
    "phone": "13800138000",
}


class VerificationCreate(RequestModel):
    """The holder's details as the partner app collected them; optionally a face attestation."""

    name: PersonName
    id_number: IdNumber
    card_number: CardNumber
    phone: Phone
    face_attestation: Annotated[str, Field(min_length=10, max_length=4096)] | None = Field(
        default=None,
        description="A JWT (typ essc-face+jwt) from a registered face-verification provider.",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})


class VerificationCreated(BaseModel):
    verification_id: str = Field(examples=["vrf_8c1d0a9e8f7b6c5d3f9c0e6b"])
    status: Literal["pending", "verified"]
    method: Literal["sms_otp", "face"]
    expires_at: datetime
    identity_assertion: str | None = Field(
        default=None, description="Present when a face attestation verified the holder at once."
    )


class VerificationConfirm(RequestModel):
    code: Annotated[str, Field(min_length=6, max_length=6, pattern=r"^\d{6}$", examples=["123456"])]


class VerificationConfirmed(BaseModel):
    status: Literal["verified"] = "verified"
    identity_assertion: str = Field(
        description="Signed, one use, audience issuance, ≤ 5 minutes: give it to POST /v1/ecards."
    )
    expires_at: datetime


class SmsOutboxItem(BaseModel):
    phone: str = Field(examples=["138****8000"], description="Masked.")
    text: str
    code: str = Field(examples=["123456"])
    sent_at: datetime


class SmsOutbox(BaseModel):
    items: list[SmsOutboxItem]
