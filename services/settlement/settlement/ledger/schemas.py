"""The ledger check's answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LedgerCheck(BaseModel):
    """``GET /v1/admin/ledger/check``: every count but the first three must be 0."""

    balanced: bool = Field(description="True when every check below found nothing.")
    problems: int
    transactions: int
    entries: int
    accounts: int
    unbalanced_transactions: int = Field(description="Transactions not summing to zero or <2 legs.")
    negative_balances: int = Field(description="Personal accounts below zero.")
    balance_mismatches: int = Field(description="Stored balances differing from their entries.")
    unmatched_settlements: int = Field(
        description="Settlements without their ledger transaction or with other figures."
    )
    unmatched_refunds: int = Field(description="Refunds without an exact reversing transaction.")
    orphan_transactions: int = Field(description="Settlement/refund postings without their record.")
    annual_total_mismatches: int = Field(
        description="Holder-years whose fund paid differs from their settlements."
    )
    checked_at: datetime
