"""Shapes of the physical-card status operation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from identity.holders.fields import CardNumber
from shared.validation import RequestModel
from shared.wire import CardStatus


class CardStatusUpdate(RequestModel):
    """The card's new status; ``replaced`` names the new card, which becomes the active one."""

    status: CardStatus = Field(strict=False)
    new_card_number: CardNumber | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "lost"}, {"status": "replaced", "new_card_number": "B98765432"}]
        }
    )


class CardStatusRead(BaseModel):
    """The card after the change."""

    card_number: str = Field(examples=["A12345678"])
    status: CardStatus
    previous_status: CardStatus
    changed: bool = Field(description="False when the card already had this status (no event).")
    changed_at: datetime
    new_card_number: str | None = Field(default=None, examples=["B98765432"])
