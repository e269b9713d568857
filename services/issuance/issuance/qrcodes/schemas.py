"""Bodies of the QR routes (API.md "E-cards": qrcodes, qrcode.png)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from issuance.ecards.schemas import Pin
from shared.validation import RequestModel


class QrFormat(StrEnum):
    NONE = "none"
    PNG = "png"
    SVG = "svg"


class QrCreate(RequestModel):
    purpose: Literal["identity", "payment"]
    pin: Pin | None = Field(default=None, description="Required for purpose=payment.")


class QrRead(BaseModel):
    qr_token: str = Field(description="What the QR code encodes (175 characters).")
    purpose: Literal["identity", "payment"]
    expires_at: datetime
    refresh_at: datetime = Field(description="Fetch the next code at this time.")
    lifetime_seconds: int
    refresh_in_seconds: int = Field(description="refresh_at - now, immune to clock skew.")
    image: str | None = Field(
        default=None, description="Base64 PNG (format=png) or SVG text (format=svg)."
    )
    image_type: str | None = None
