"""Annotated dependencies of the identity routes: session, settings, state and the callers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from identity.config import IdentitySettings
from identity.db import SessionDep
from identity.state import IdentityState
from shared.auth import require, require_service
from shared.tokens.claims import ClientKind, InternalTokenClaims

__all__ = [
    "IssuanceDep",
    "OpsDep",
    "PartnerDep",
    "SessionDep",
    "SettingsDep",
    "StateDep",
]


async def _settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


async def _state(request: Request) -> IdentityState:
    state: IdentityState = request.app.state.identity
    return state


SettingsDep = Annotated[IdentitySettings, Depends(_settings)]
StateDep = Annotated[IdentityState, Depends(_state)]
OpsDep = Annotated[InternalTokenClaims, Depends(require(scopes={"ops"}, kinds={ClientKind.OPS}))]
PartnerDep = Annotated[
    InternalTokenClaims,
    Depends(require(scopes={"ecard:issue"}, kinds={ClientKind.PARTNER_APP})),
]
IssuanceDep = Annotated[InternalTokenClaims, Depends(require_service("issuance"))]
GatewayServiceDep = Annotated[InternalTokenClaims, Depends(require_service("gateway"))]
FeedReaderDep = Annotated[InternalTokenClaims, Depends(require_service("issuance", "settlement"))]
