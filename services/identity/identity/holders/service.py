"""Holder rules: the idempotent batch import and the masked profile issuance reads.

An import row is validated on its own; a refused row writes nothing and is
reported with its index and field errors, the other rows go through. Rows are
matched to existing holders by the ID number's blind index (idempotent). A
card's status is never changed by an import (that is the card status
operation's job, with its history and event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.errors import HolderNotFoundError
from identity.events.repository import append_events
from identity.holders import crypto
from identity.holders import repository as repo
from identity.holders.fields import birth_date_of, gender_of
from identity.holders.schemas import HolderImportResult, HolderRow, RowRejection
from identity.timeutil import now as utcnow
from shared.fieldcrypto import DataKeys, mask_card_number, mask_id_number, mask_name
from shared.problems import ConflictError, format_loc
from shared.wire import HolderProfile, HolderUpserted, PinCheckResult

HOLDER_UPSERTED = "holder.upserted"


def _row_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "field": format_loc(tuple(e["loc"])),
            "message": str(e["msg"]).removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]


@dataclass
class _Batch:
    result: HolderImportResult = field(
        default_factory=lambda: HolderImportResult(created=0, updated=0, unchanged=0, rejected=[])
    )
    holders: list[dict[str, Any]] = field(default_factory=list)
    cards: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def reject(self, index: int, errors: list[dict[str, str]]) -> None:
        self.result.rejected.append(RowRejection.model_validate({"index": index, "errors": errors}))


def validate_rows(raw: list[dict[str, Any]], batch: _Batch) -> list[tuple[int, HolderRow]]:
    """Parse each row; refuse invalid ones and duplicates within the batch."""
    valid: list[tuple[int, HolderRow]] = []
    seen_ids: dict[str, int] = {}
    seen_cards: dict[str, int] = {}
    for index, item in enumerate(raw):
        try:
            row = HolderRow.model_validate(item)
        except ValidationError as exc:
            batch.reject(index, _row_errors(exc))
            continue
        errors = []
        if row.id_number in seen_ids:
            errors.append(
                {"field": "id_number", "message": f"duplicates row {seen_ids[row.id_number]}"}
            )
        if row.card_number in seen_cards:
            errors.append(
                {"field": "card_number", "message": f"duplicates row {seen_cards[row.card_number]}"}
            )
        if errors:
            batch.reject(index, errors)
            continue
        seen_ids[row.id_number] = index
        seen_cards[row.card_number] = index
        valid.append((index, row))
    return valid


def _upserted(holder_ref: str, row: HolderRow, *, with_balance: bool) -> dict[str, Any]:
    return HolderUpserted(
        holder_ref=holder_ref,
        insured_region=row.region_code,
        insurance_type=row.insurance_type,
        birth_date=birth_date_of(row.id_number),
        gender=gender_of(row.id_number),
        opening_balance_fen=row.account_balance if with_balance else None,
    ).model_dump(mode="json")


async def import_holders(
    session: AsyncSession, keys: DataKeys, raw_rows: list[dict[str, Any]], *, actor: str
) -> HolderImportResult:
    """Create or update holders and their cards; emit ``holder.upserted`` for each change.

    Raises 409 if a concurrent import created the same holder or card first.
    """
    batch = _Batch()
    valid = validate_rows(raw_rows, batch)
    by_index = {crypto.id_index(keys, r.id_number): (i, r) for i, r in valid}
    existing = await repo.holders_by_id_index(session, list(by_index))
    cards = await repo.cards_by_number(session, [r.card_number for _, r in valid])
    active = await repo.active_cards_of(session, [h.holder_ref for h in existing.values()])
    ts = utcnow()
    for bidx, (index, row) in by_index.items():
        holder = existing.get(bidx)
        card = cards.get(row.card_number)
        if card is not None and (holder is None or card.holder_ref != holder.holder_ref):
            batch.reject(
                index, [{"field": "card_number", "message": "is registered to another holder"}]
            )
            continue
        if holder is None:
            _create(batch, keys, row, ts, actor)
            continue
        await _update(session, batch, keys, index, row, holder, card, active, ts, actor)
    try:
        await repo.insert_holders(session, batch.holders)
        await repo.insert_cards(session, batch.cards)
        await repo.insert_status_changes(session, batch.history)
        await append_events(session, batch.events)
        await session.flush()
    except IntegrityError:
        raise ConflictError(
            "Another import changed the same holders or cards at the same time; retry."
        ) from None
    batch.result.rejected.sort(key=lambda r: r.index)
    return batch.result


def _new_card(batch: _Batch, holder_ref: str, row: HolderRow, ts: Any, actor: str) -> None:
    card_ref = crypto.new_card_ref()
    batch.cards.append(
        {
            "card_ref": card_ref,
            "card_number": row.card_number,
            "holder_ref": holder_ref,
            "region_code": row.region_code,
            "status": row.card_status,
            "created_at": ts,
            "updated_at": ts,
        }
    )
    batch.history.append(
        {
            "card_ref": card_ref,
            "from_status": None,
            "to_status": row.card_status,
            "actor": actor,
            "changed_at": ts,
        }
    )


def _create(batch: _Batch, keys: DataKeys, row: HolderRow, ts: Any, actor: str) -> None:
    holder_ref = crypto.new_holder_ref()
    sealed = crypto.seal(keys, holder_ref, id_number=row.id_number, name=row.name, phone=row.phone)
    batch.holders.append(
        repo.holder_values(
            holder_ref,
            sealed,
            gender=gender_of(row.id_number),
            birth_date=birth_date_of(row.id_number),
            region=row.region_code,
            insurance=row.insurance_type,
            now=ts,
        )
    )
    _new_card(batch, holder_ref, row, ts, actor)
    batch.events.append((HOLDER_UPSERTED, _upserted(holder_ref, row, with_balance=True)))
    batch.result.created += 1


async def _update(
    session: AsyncSession,
    batch: _Batch,
    keys: DataKeys,
    index: int,
    row: HolderRow,
    holder: Any,
    card: Any,
    active: dict[str, Any],
    ts: Any,
    actor: str,
) -> None:
    ref = holder.holder_ref
    if card is not None and card.status != row.card_status:
        batch.reject(
            index,
            [
                {
                    "field": "card_status",
                    "message": "differs from the card's status; change it with "
                    "POST /v1/admin/cards/{card_number}/status",
                }
            ],
        )
        return
    if card is None and row.card_status == "active" and ref in active:
        batch.reject(
            index,
            [{"field": "card_number", "message": "the holder already has another active card"}],
        )
        return
    values: dict[str, Any] = {}
    if crypto.open_field(keys, ref, "name", holder.name_enc) != row.name:
        values["name_enc"] = keys.cipher.encrypt(
            row.name, table=crypto.TABLE, column="name", row=ref
        )
    if crypto.open_field(keys, ref, "phone", holder.phone_enc) != row.phone:
        values["phone_enc"] = keys.cipher.encrypt(
            row.phone, table=crypto.TABLE, column="phone", row=ref
        )
        values["phone_bidx"] = crypto.phone_index(keys, row.phone)
    if holder.insured_region != row.region_code:
        values["insured_region"] = row.region_code
    if holder.insurance_type != row.insurance_type:
        values["insurance_type"] = row.insurance_type
    if card is None:
        _new_card(batch, ref, row, ts, actor)
    if not values and card is not None:
        batch.result.unchanged += 1
        return
    if values:
        values["updated_at"] = ts
        await repo.update_holder(session, ref, values)
    batch.events.append((HOLDER_UPSERTED, _upserted(ref, row, with_balance=True)))
    batch.result.updated += 1


async def holder_profile(session: AsyncSession, keys: DataKeys, holder_ref: str) -> HolderProfile:
    """The masked profile of a holder and their current card; 404 if unknown."""
    holder = await repo.get_holder(session, holder_ref)
    card = await repo.current_card_of(session, holder_ref) if holder is not None else None
    if holder is None or card is None:
        raise HolderNotFoundError("No such holder.")
    name = crypto.open_field(keys, holder_ref, "name", holder.name_enc)
    id_number = crypto.open_field(keys, holder_ref, "id_number", holder.id_number_enc)
    return HolderProfile(
        holder_ref=holder_ref,
        name_masked=mask_name(name),
        id_number_masked=mask_id_number(id_number),
        gender=holder.gender,
        birth_date=holder.birth_date,
        insured_region=holder.insured_region,
        insurance_type=holder.insurance_type,
        card_ref=card.card_ref,
        card_number_masked=mask_card_number(card.card_number),
        card_region=card.region_code,
        card_status=card.status,
    )


async def pin_check(
    session: AsyncSession, keys: DataKeys, holder_ref: str, pin: str
) -> PinCheckResult:
    """Whether ``pin`` occurs in the holder's ID number (issuance only sees it masked). 404."""
    holder = await repo.get_holder(session, holder_ref)
    if holder is None:
        raise HolderNotFoundError("No such holder.")
    id_number = crypto.open_field(keys, holder_ref, "id_number", holder.id_number_enc)
    return PinCheckResult(contained=pin in id_number)
