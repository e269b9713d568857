"""``GET /v1/admin/risk/alerts`` and ``POST /v1/admin/risk/alerts/{alert_id}/resolve`` (ops)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from settlement.db import SessionDep
from settlement.deps import Operator, PartsDep
from settlement.risk import service
from settlement.risk.schemas import AlertPage, AlertRead, AlertResolve
from shared.validation import IdPath

router = APIRouter(tags=["operations"])


@router.get("/v1/admin/risk/alerts", response_model=AlertPage)
async def list_alerts(
    session: SessionDep,
    _caller: Operator,
    status: Literal["open", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlertPage:
    """Alerts newest first (held and flagged attempts), optionally by status."""
    return await service.list_alerts(session, status=status, cursor=cursor, limit=limit)


@router.post("/v1/admin/risk/alerts/{alert_id}/resolve", response_model=AlertRead)
async def resolve_alert(
    alert_id: IdPath,
    body: AlertResolve,
    session: SessionDep,
    parts: PartsDep,
    caller: Operator,
) -> AlertRead:
    """Close an alert with the operator's verdict."""
    return await service.resolve(session, alert_id, body, by=caller.client_id, now=parts.now())
