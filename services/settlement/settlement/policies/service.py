"""Policy rules: loading a new version, finding the one in force, resolving a visit's terms."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import date, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.calculator import Terms
from settlement.errors import PolicyNotFoundError
from settlement.policies import repository
from settlement.policies.schemas import (
    AgeBand,
    PolicyLoad,
    PolicyLoaded,
    PolicyParams,
    PolicyRead,
    VisitType,
)
from shared.problems import ConflictError
from shared.validation import region_name
from shared.wire import InsuranceType


@dataclass(frozen=True)
class PolicyInForce:
    """A loaded policy version, parsed once."""

    id: int
    region_code: str
    year: int
    version: int
    source: str
    loaded_at: datetime
    params: PolicyParams

    def read(self) -> PolicyRead:
        return PolicyRead(
            **self.params.model_dump(),
            region_code=self.region_code,
            region_name=region_name(self.region_code),
            year=self.year,
            version=self.version,
            source=self.source,
            loaded_at=self.loaded_at,
        )


class PolicyCache:
    """Policies in force, cached per (region, year) for ``ttl`` seconds (they change rarely).

    A version loaded through this process clears the cache at once; one loaded elsewhere
    applies within ``ttl``.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, int], tuple[float, PolicyInForce | None]] = {}

    def get(self, region_code: str, year: int) -> tuple[bool, PolicyInForce | None]:
        hit = self._entries.get((region_code, year))
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, region_code: str, year: int, policy: PolicyInForce | None) -> None:
        if self.ttl > 0:
            self._entries[(region_code, year)] = (time.monotonic() + self.ttl, policy)

    def clear(self) -> None:
        self._entries.clear()


def params_digest(params: PolicyParams) -> tuple[dict[str, object], str]:
    """The stored JSON form of ``params`` and its SHA-256 (sorted keys)."""
    doc = params.model_dump(mode="json")
    return doc, hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def load(
    session: AsyncSession, region_code: str, policy: PolicyLoad, *, source: str, now: datetime
) -> PolicyLoaded:
    """Store ``policy`` as the next version for its region and year.

    Idempotent: parameters equal to the current version create nothing (``created`` false).
    Raises 409 if another load of the same region and year won the version number.
    """
    params = PolicyParams.model_validate(policy.model_dump(exclude={"year"}))
    doc, digest = params_digest(params)
    latest = await repository.latest_version(session, region_code, policy.year)
    if latest is not None and latest.params_sha256 == digest:
        return PolicyLoaded(
            region_code=region_code, year=policy.year, version=latest.version, created=False
        )
    version = 1 if latest is None else latest.version + 1
    inserted = await repository.insert_version(
        session,
        region_code=region_code,
        year=policy.year,
        version=version,
        name=params.name,
        params=doc,
        params_sha256=digest,
        source=source,
        now=now,
    )
    if not inserted:
        raise ConflictError("Another load of this policy ran at the same time; retry.")
    return PolicyLoaded(region_code=region_code, year=policy.year, version=version, created=True)


async def in_force(
    session: AsyncSession, cache: PolicyCache, region_code: str, year: int
) -> PolicyInForce | None:
    """The policy in force for an insured region in ``year`` (county → city → province)."""
    hit, cached = cache.get(region_code, year)
    if hit:
        return cached
    row = await repository.in_force(session, region_code, year)
    policy = None
    if row is not None:
        policy = PolicyInForce(
            id=row.id,
            region_code=row.region_code,
            year=row.year,
            version=row.version,
            source=row.source,
            loaded_at=row.loaded_at,
            params=PolicyParams.model_validate(row.params),
        )
    cache.put(region_code, year, policy)
    return policy


async def read(
    session: AsyncSession, cache: PolicyCache, region_code: str, year: int
) -> PolicyRead:
    """``GET /v1/policies/{region_code}``; raises 404 for a region without a policy."""
    policy = await in_force(session, cache, region_code, year)
    if policy is None:
        raise PolicyNotFoundError(f"No policy is loaded for region {region_code}.")
    return policy.read()


def age_band(insurance_type: InsuranceType, birth_date: date, on: date) -> AgeBand:
    """Retired holders have their own band; others are under 45 or 45 and over on ``on``."""
    if insurance_type is InsuranceType.RETIRED:
        return "retired"
    age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return "under_45" if age < 45 else "from_45"


def terms_for(params: PolicyParams, visit: VisitType, level: int, band: AgeBand) -> Terms:
    """The calculator's figures for one visit."""
    deductible = getattr(getattr(params.deductible, visit), f"level_{level}")
    ratio = getattr(getattr(getattr(params.fund_ratio, visit), f"level_{level}"), band)
    return Terms(
        deductible_fen=deductible,
        fund_ratio=ratio,
        class_b_share=params.class_b_self_pay,
        annual_cap_fen=params.annual_cap,
        account_may_pay=params.account_may_pay,
    )
