"""``GET /v1/reconciliation/daily`` (3201 JSON, 3202 CSV) and ``POST /v1/reconciliation/checks``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from settlement import idempotent
from settlement.db import SessionDep
from settlement.deps import HospitalReconciliation, PartsDep
from settlement.reconciliation import service
from settlement.reconciliation.schemas import CheckCreate, CheckRead, DailyTotals
from shared.validation import IsoDate

router = APIRouter(tags=["reconciliation"])


@router.get(
    "/v1/reconciliation/daily",
    response_model=DailyTotals,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def daily(
    session: SessionDep,
    parts: PartsDep,
    principal: HospitalReconciliation,
    on: Annotated[IsoDate, Query(alias="date", description="Business day, YYYY-MM-DD.")],
    accept: Annotated[str | None, Header()] = None,
) -> Response | DailyTotals:
    """The calling hospital's totals for a day; ``Accept: text/csv`` gives the detail lines."""
    totals, lines = await service.day(session, parts, principal.client_id, on)
    if accept and "text/csv" in accept.lower():
        return Response(
            service.to_csv(lines),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="reconciliation-{on}.csv"'},
        )
    return totals


@router.post("/v1/reconciliation/checks", response_model=CheckRead)
async def check(
    body: CheckCreate,
    request: Request,
    session: SessionDep,
    parts: PartsDep,
    principal: HospitalReconciliation,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Compare the hospital's own figures for a day; differing figures and settlements."""
    return await idempotent.run(
        request,
        session,
        parts,
        client_id=principal.client_id,
        key_header=idempotency_key,
        required=False,
        status_code=200,
        work=lambda: service.check(session, parts, principal.client_id, body),
    )
