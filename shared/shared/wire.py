"""Wire shapes that cross a service boundary inside the cluster: one owner, one definition.

Internal APIs (``/internal/v1/...``, called with the caller's own service token)
and the identity service's event feed. Amounts here are integer fen; the public
API's decimal strings are made at the edge (:mod:`shared.money`). Each model
names its owner (the service that answers or emits it).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    """Internal wire models ignore unknown fields (forward compatible), never coerce loosely."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class CardStatus(StrEnum):
    """Status of a physical social security card (owner: identity)."""

    ACTIVE = "active"
    LOST = "lost"
    SUSPENDED = "suspended"
    REPLACED = "replaced"
    CANCELLED = "cancelled"


class InsuranceType(StrEnum):
    """Medical-insurance scheme of a holder; ``retired`` employees have their own age band."""

    EMPLOYEE = "employee"
    RETIRED = "retired"
    RESIDENT = "resident"


class EcardStatus(StrEnum):
    """Status of an e-card (owner: issuance)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    UNLINKED = "unlinked"


Gender = Literal["male", "female"]
Region = Annotated[str, Field(pattern=r"^\d{6}$")]


# --- identity → issuance: GET /internal/v1/holders/{holder_ref} -------------------------------


class HolderProfile(WireModel):
    """What issuance keeps about a holder: masked identity, insurance and the active card.

    ``holder_ref`` is identity's opaque holder reference (never the ID number).
    ``card_ref`` is identity's opaque reference of the physical card; it changes
    when the card is replaced.
    """

    holder_ref: str
    name_masked: str
    id_number_masked: str
    gender: Gender
    birth_date: date
    insured_region: Region
    insurance_type: InsuranceType
    card_ref: str
    card_number_masked: str
    card_region: Region
    card_status: CardStatus


# --- identity's event feed: GET /internal/v1/events?after=<seq>&limit=<n> ----------------------


class CardStatusChanged(WireModel):
    """Payload of ``card.status_changed``: the e-cards of ``holder_ref`` follow ``status``.

    On ``replaced`` the holder's new active card is ``new_card_ref``.
    """

    holder_ref: str
    card_ref: str
    status: CardStatus
    previous_status: CardStatus | None = None
    new_card_ref: str | None = None
    new_card_number_masked: str | None = None
    region_code: Region


class HolderUpserted(WireModel):
    """Payload of ``holder.upserted``: a holder was created or updated by ops.

    ``opening_balance_fen`` is the personal-account balance given at import; the
    settlement service applies it once, when it opens the account.
    """

    holder_ref: str
    insured_region: Region
    insurance_type: InsuranceType
    birth_date: date
    gender: Gender
    opening_balance_fen: int | None = Field(default=None, ge=0)


class Event(WireModel):
    """One event of the identity outbox; ``seq`` orders the feed, ``event_id`` deduplicates."""

    event_id: str
    seq: int
    type: Literal["card.status_changed", "holder.upserted"]
    occurred_at: datetime
    payload: dict[str, object]


class EventPage(WireModel):
    """A page of the feed; ask again with ``after=next_after``."""

    items: list[Event]
    next_after: int


# --- settlement → issuance: settlement tokens and e-card ownership ------------------------------


class SettlementTokenResolve(WireModel):
    """``POST /internal/v1/settlement-tokens/resolve``: look up without consuming."""

    settlement_token: str = Field(min_length=40, max_length=40)
    hospital_client_id: str


class SettlementTokenRedeem(SettlementTokenResolve):
    """``POST /internal/v1/settlement-tokens/redeem``: consume exactly once.

    Idempotent for the same ``redemption_ref`` (the settlement's quote id): a
    settlement retried after a crash redeems again and gets the same answer; a
    different ref gets 409.
    """

    redemption_ref: str = Field(min_length=1, max_length=64)


class SettlementTokenInfo(WireModel):
    """Who a settlement token is for (owner: issuance)."""

    ecard_id: str
    scan_id: str
    holder_ref: str
    partner_client_id: str
    hospital_client_id: str
    insured_region: Region
    insurance_type: InsuranceType
    birth_date: date
    gender: Gender
    sign_level: int
    ecard_status: EcardStatus
    expires_at: datetime
    redeemed_at: datetime | None = None
    redemption_ref: str | None = None


class EcardRef(WireModel):
    """``GET /internal/v1/ecards/{ecard_id}?client_id=<partner>``: 404 unless that app's e-card."""

    ecard_id: str
    holder_ref: str
    partner_client_id: str
    status: EcardStatus
    insured_region: Region


# --- issuance → settlement: what the e-card web page shows --------------------------------------


class SettlementBrief(WireModel):
    settlement_id: str
    settled_at: datetime
    hospital_name: str
    total_fen: int
    fund_pay_fen: int
    account_pay_fen: int
    cash_pay_fen: int
    refunded: bool


class HolderAccountSummary(WireModel):
    """``GET /internal/v1/holders/{holder_ref}/summary?limit=<n>`` (owner: settlement)."""

    holder_ref: str
    year: int
    balance_fen: int
    deductible_used_fen: int
    fund_paid_fen: int
    cap_remaining_fen: int
    recent: list[SettlementBrief]


# --- identity → issuance: PIN check and partner client details ---------------------------------


class PinCheckRequest(WireModel):
    """``POST /internal/v1/holders/{holder_ref}/pin-check`` (owner: identity).

    Issuance keeps only the masked ID number, so identity answers whether a proposed
    six-digit PIN occurs anywhere in the holder's ID number.
    """

    pin: str = Field(pattern=r"^\d{6}$")


class PinCheckResult(WireModel):
    contained: bool


class ClientInfo(WireModel):
    """``GET /internal/v1/clients/{client_id}`` (owner: identity; caller: issuance).

    ``webhook_secret`` signs the webhooks issuance sends to a partner app; it is
    present only for partner apps registered with a ``webhook_url``.
    """

    client_id: str
    kind: str
    name: str
    region_code: Region | None = None
    level: int | None = Field(default=None, ge=1, le=3)
    status: Literal["active", "disabled"]
    webhook_url: str | None = None
    webhook_secret: str | None = None


class DisabledClients(WireModel):
    """``GET /internal/v1/clients/disabled`` (owner: identity; caller: the gateway, polling):
    clients whose still-valid access tokens must be refused."""

    client_ids: list[str]


# --- issuance → partner apps: webhook events (public, documented in the gateway) -----------------


class EcardWebhookType(StrEnum):
    SUSPENDED = "ecard.suspended"
    RESUMED = "ecard.resumed"
    REVOKED = "ecard.revoked"
    REISSUED = "ecard.reissued"
