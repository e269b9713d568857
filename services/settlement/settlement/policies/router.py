"""Policies: ``GET /v1/policies/{region_code}`` (hospitals) and the ops loading route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from settlement.db import SessionDep
from settlement.deps import HospitalRead, Operator, PartsDep
from settlement.errors import PolicyNotFoundError
from settlement.policies import service
from settlement.policies.schemas import PolicyLoad, PolicyLoaded, PolicyRead
from shared.validation import is_known_region

router = APIRouter(tags=["settlement"])
admin = APIRouter(tags=["operations"])

RegionPath = Annotated[str, Path(pattern=r"^\d{6}$", examples=["310000"])]


@router.get("/v1/policies/{region_code}", response_model=PolicyRead)
async def get_policy(
    region_code: RegionPath, session: SessionDep, parts: PartsDep, _caller: HospitalRead
) -> PolicyRead:
    """The insured region's parameters in force this year (404 for a region without one)."""
    if not is_known_region(region_code):
        raise PolicyNotFoundError(f"{region_code} is not a known region code.")
    return await service.read(session, parts.policies, region_code, parts.year(parts.now()))


@admin.put("/v1/admin/policies/{region_code}", response_model=PolicyLoaded)
async def put_policy(
    region_code: RegionPath,
    body: PolicyLoad,
    session: SessionDep,
    parts: PartsDep,
    caller: Operator,
) -> PolicyLoaded:
    """Load a new version of a region's policy for a year (same parameters → no new version)."""
    if not is_known_region(region_code):
        raise PolicyNotFoundError(f"{region_code} is not a known region code.")
    loaded = await service.load(
        session, region_code, body, source=f"ops:{caller.client_id}"[:128], now=parts.now()
    )
    parts.policies.clear()
    return loaded
