"""Annotated dependencies the routers share: the app's parts, the runtime, callers by kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from settlement.businessday import business_date
from settlement.config import SettlementSettings
from settlement.policies.service import PolicyCache
from settlement.telemetry import SettlementMetrics
from shared.app import Runtime
from shared.auth import require, require_service
from shared.idempotency import Idempotency
from shared.tokens.claims import ClientKind, InternalTokenClaims


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Parts:
    """What the settlement app builds once (in ``create_app``) and every request uses."""

    settings: SettlementSettings
    metrics: SettlementMetrics
    policies: PolicyCache
    idempotency: Idempotency
    clock: Callable[[], datetime] = field(default=utc_now)

    def now(self) -> datetime:
        return self.clock()

    def year(self, now: datetime) -> int:
        """The insurance (business) year of ``now``."""
        return business_date(now, self.settings.business_utc_offset_hours).year


async def _parts(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


PartsDep = Annotated[Parts, Depends(_parts)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]

_HOSPITAL = (ClientKind.HOSPITAL,)
HospitalRead = Annotated[
    InternalTokenClaims, Depends(require(scopes=("settlement:read",), kinds=_HOSPITAL))
]
HospitalWrite = Annotated[
    InternalTokenClaims, Depends(require(scopes=("settlement:write",), kinds=_HOSPITAL))
]
HospitalReconciliation = Annotated[
    InternalTokenClaims, Depends(require(scopes=("reconciliation",), kinds=_HOSPITAL))
]
PartnerEnquiry = Annotated[
    InternalTokenClaims,
    Depends(require(scopes=("holder:enquiry",), kinds=(ClientKind.PARTNER_APP,))),
]
Operator = Annotated[
    InternalTokenClaims, Depends(require(scopes=("ops",), kinds=(ClientKind.OPS,)))
]
IssuanceCaller = Annotated[InternalTokenClaims, Depends(require_service("issuance"))]
