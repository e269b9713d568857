"""Wire shapes of risk assessments and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.validation import CleanStr, RequestModel


class RuleHitRead(BaseModel):
    rule: str
    score: int
    reason: str


class RiskRead(BaseModel):
    """The rules that fired for an attempt (``held`` when their score reached the threshold)."""

    score: int
    held: bool
    rules: list[RuleHitRead]


class AlertRead(BaseModel):
    alert_id: str
    stage: Literal["quote", "settlement"]
    action: Literal["held", "flagged"]
    status: Literal["open", "resolved"]
    holder_ref: str
    hospital_client_id: str
    quote_id: str | None
    settlement_id: str | None
    score: int
    rules: list[RuleHitRead]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class AlertPage(BaseModel):
    items: list[AlertRead]
    next_cursor: str | None


NOTE_MAX_LENGTH = 480


class AlertResolve(RequestModel):
    """``POST /v1/admin/risk/alerts/{alert_id}/resolve``."""

    resolution: Literal["confirmed_fraud", "false_positive", "acceptable"]
    # Stored as "<resolution>: <note>" in a 500-character column.
    note: CleanStr | None = Field(default=None, max_length=NOTE_MAX_LENGTH)
