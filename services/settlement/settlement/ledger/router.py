"""``GET /v1/admin/ledger/check`` (ops)."""

from __future__ import annotations

from fastapi import APIRouter

from settlement.db import SessionDep
from settlement.deps import Operator, PartsDep
from settlement.ledger import service
from settlement.ledger.schemas import LedgerCheck

router = APIRouter(tags=["operations"])


@router.get("/v1/admin/ledger/check", response_model=LedgerCheck)
async def ledger_check(session: SessionDep, parts: PartsDep, _caller: Operator) -> LedgerCheck:
    """Check the whole ledger; also sets the ``essc_ledger_imbalance`` gauge."""
    result = await service.check(session, now=parts.now())
    parts.metrics.ledger_imbalance.set(result.problems)
    return result
