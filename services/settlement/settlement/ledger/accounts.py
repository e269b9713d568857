"""Ledger accounts: their kinds and stable ids (derivable, so postings need no lookups).

Sign convention: an entry's amount is positive for a debit and negative for a credit; every
transaction sums to zero. A personal account's balance is what the holder may spend (a
settlement's account leg is negative); the receivable of a hospital grows by each bill's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AccountKind(StrEnum):
    PERSONAL = "personal"  # a holder's personal account (stored balance, never negative)
    FUND = "fund"  # an insured region's pooled fund
    RECEIVABLE = "receivable"  # what a hospital is owed for the bills it settled
    CASH = "cash"  # cash the holders paid at the counter (one clearing account)
    INTERREGION = "interregion"  # what an insured region owes a treatment region's pool
    FUNDING = "funding"  # the source of opening balances and top-ups, per region


@dataclass(frozen=True, slots=True)
class AccountSpec:
    id: str
    kind: AccountKind
    owner_ref: str
    region_code: str | None = None

    @property
    def tracked(self) -> bool:
        """Accounts with a stored balance (the others' balance is the sum of their entries)."""
        return self.kind is AccountKind.PERSONAL


def personal(holder_ref: str, region_code: str) -> AccountSpec:
    return AccountSpec(f"personal:{holder_ref}", AccountKind.PERSONAL, holder_ref, region_code)


def fund(region_code: str) -> AccountSpec:
    return AccountSpec(f"fund:{region_code}", AccountKind.FUND, region_code, region_code)


def receivable_id(hospital_client_id: str) -> str:
    return f"receivable:{hospital_client_id}"


def receivable(hospital_client_id: str, region_code: str) -> AccountSpec:
    return AccountSpec(
        receivable_id(hospital_client_id), AccountKind.RECEIVABLE, hospital_client_id, region_code
    )


CASH_CLEARING = AccountSpec("cash:clearing", AccountKind.CASH, "platform")


def interregion(insured: str, treatment: str) -> AccountSpec:
    return AccountSpec(
        f"interregion:{insured}:{treatment}",
        AccountKind.INTERREGION,
        f"{insured}>{treatment}",
        insured,
    )


def funding(region_code: str) -> AccountSpec:
    return AccountSpec(f"funding:{region_code}", AccountKind.FUNDING, region_code, region_code)
