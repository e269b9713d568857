"""``POST /v1/admin/cards/{card_number}/status``: ops record a physical card's status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from identity.cards import service
from identity.cards.schemas import CardStatusRead, CardStatusUpdate
from identity.deps import OpsDep, SessionDep
from identity.docs import problems

router = APIRouter(tags=["operations"])


@router.post(
    "/v1/admin/cards/{card_number}/status",
    response_model=CardStatusRead,
    summary="Change a physical card's status (the holder's e-cards follow)",
    responses=problems(
        401,
        403,
        404,
        409,
        422,
        s404="No card with this number.",
        s409="Transition not allowed, or the new card number is taken.",
    ),
)
async def change_status(
    card_number: Annotated[str, Path(min_length=9, max_length=9, pattern=r"^[A-Z0-9]{9}$")],
    body: CardStatusUpdate,
    session: SessionDep,
    ops: OpsDep,
) -> CardStatusRead:
    """Allowed: active → lost | suspended | replaced | cancelled; lost → active | replaced |
    cancelled; suspended → active | lost | replaced | cancelled; replaced and cancelled are
    final. `replaced` needs `new_card_number`, which becomes the holder's active card. Each
    change is kept in the card's history and published as a `card.status_changed` event."""
    return await service.change_status(session, card_number, body, actor=ops.client_id)
