"""Physical card status: validated transitions, history, and the ``card.status_changed`` event.

The event is written to the outbox in the same transaction as the change, so
issuance sees exactly the committed changes, in commit order.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.cards import repository as repo
from identity.cards.schemas import CardStatusRead, CardStatusUpdate
from identity.errors import CardNotFoundError, CardNumberTakenError, CardTransitionError
from identity.events.repository import append_events
from identity.holders.crypto import new_card_ref
from identity.timeutil import now as utcnow
from shared.fieldcrypto import mask_card_number
from shared.problems import UnprocessableError
from shared.wire import CardStatus, CardStatusChanged

CARD_STATUS_CHANGED = "card.status_changed"

ALLOWED: dict[CardStatus, frozenset[CardStatus]] = {
    CardStatus.ACTIVE: frozenset(
        {CardStatus.LOST, CardStatus.SUSPENDED, CardStatus.REPLACED, CardStatus.CANCELLED}
    ),
    CardStatus.LOST: frozenset({CardStatus.ACTIVE, CardStatus.REPLACED, CardStatus.CANCELLED}),
    CardStatus.SUSPENDED: frozenset(
        {CardStatus.ACTIVE, CardStatus.LOST, CardStatus.REPLACED, CardStatus.CANCELLED}
    ),
    CardStatus.REPLACED: frozenset(),
    CardStatus.CANCELLED: frozenset(),
}


def _check_body(body: CardStatusUpdate) -> None:
    if body.status is CardStatus.REPLACED and body.new_card_number is None:
        raise UnprocessableError(
            "A replaced card needs the new card's number.",
            errors=[{"field": "new_card_number", "message": "required when status is replaced"}],
        )
    if body.status is not CardStatus.REPLACED and body.new_card_number is not None:
        raise UnprocessableError(
            "Only a replacement names a new card.",
            errors=[{"field": "new_card_number", "message": "only allowed with status replaced"}],
        )


async def change_status(
    session: AsyncSession, card_number: str, body: CardStatusUpdate, *, actor: str
) -> CardStatusRead:
    """Apply a status change. 404 unknown card, 409 transition not allowed or new number taken,
    422 inconsistent body. Re-sending the current status is a no-op (``changed: false``)."""
    _check_body(body)
    card = await repo.card_for_update(session, card_number)
    if card is None:
        raise CardNotFoundError("No card with this number.")
    before = CardStatus(card.status)
    ts = utcnow()
    if before is body.status:
        return CardStatusRead(
            card_number=card_number,
            status=before,
            previous_status=before,
            changed=False,
            changed_at=ts,
        )
    if body.status not in ALLOWED[before]:
        raise CardTransitionError(
            f"A card that is {before.value} cannot become {body.status.value}."
        )
    if body.status is CardStatus.ACTIVE and await repo.other_active_card(
        session, card.holder_ref, card.card_ref
    ):
        raise CardTransitionError("The holder already has another active card.")
    new_ref: str | None = None
    await repo.set_status(session, card.card_ref, body.status.value, ts)
    await repo.add_history(session, card.card_ref, before.value, body.status.value, actor, ts)
    if body.status is CardStatus.REPLACED:
        assert body.new_card_number is not None
        if await repo.card_number_exists(session, body.new_card_number):
            raise CardNumberTakenError("The new card number is already registered.")
        new_ref = new_card_ref()
        await repo.insert_card(
            session,
            {
                "card_ref": new_ref,
                "card_number": body.new_card_number,
                "holder_ref": card.holder_ref,
                "region_code": card.region_code,
                "status": CardStatus.ACTIVE.value,
                "created_at": ts,
                "updated_at": ts,
            },
        )
        await repo.add_history(session, new_ref, None, CardStatus.ACTIVE.value, actor, ts)
    payload = CardStatusChanged(
        holder_ref=card.holder_ref,
        card_ref=card.card_ref,
        status=body.status,
        previous_status=before,
        new_card_ref=new_ref,
        new_card_number_masked=mask_card_number(body.new_card_number)
        if body.new_card_number
        else None,
        region_code=card.region_code,
    )
    await append_events(session, [(CARD_STATUS_CHANGED, payload.model_dump(mode="json"))])
    try:
        await session.flush()
    except IntegrityError:
        raise CardTransitionError(
            "The card or the holder's active card changed at the same time; retry."
        ) from None
    return CardStatusRead(
        card_number=card_number,
        status=body.status,
        previous_status=before,
        changed=True,
        changed_at=ts,
        new_card_number=body.new_card_number,
    )
