"""``GET /internal/v1/events``: identity's event feed for issuance and settlement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from identity.deps import FeedReaderDep, SessionDep
from identity.docs import problems
from identity.events import repository
from identity.timeutil import aware
from shared.wire import Event, EventPage

router = APIRouter(tags=["internal"])


@router.get(
    "/internal/v1/events",
    response_model=EventPage,
    summary="Events after a sequence number (issuance, settlement)",
    responses=problems(401, 403, 422),
)
async def events(
    session: SessionDep,
    _caller: FeedReaderDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    """Ordered by ``seq`` (commit order); deduplicate by ``event_id``; ask again with
    ``after=next_after``."""
    rows = await repository.read_events(session, after=after, limit=limit)
    items = [
        Event(
            event_id=r.event_id,
            seq=r.seq,
            type=r.type,
            occurred_at=aware(r.occurred_at),
            payload=r.payload,
        )
        for r in rows
    ]
    return EventPage(items=items, next_after=items[-1].seq if items else after)
