"""Annotated dependencies of the issuance routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from issuance.context import IssuanceContext
from issuance.db import SessionDep
from shared.auth import require, require_service
from shared.tokens.claims import ClientKind, InternalTokenClaims

__all__ = [
    "ContextDep",
    "IssuePrincipal",
    "ManagePrincipal",
    "QrPrincipal",
    "ScanPrincipal",
    "SessionDep",
    "SettlementService",
]


async def get_context(request: Request) -> IssuanceContext:
    ctx: IssuanceContext = request.app.state.issuance
    return ctx


ContextDep = Annotated[IssuanceContext, Depends(get_context)]

_PARTNER = (ClientKind.PARTNER_APP,)
IssuePrincipal = Annotated[
    InternalTokenClaims, Depends(require(scopes=("ecard:issue",), kinds=_PARTNER))
]
ManagePrincipal = Annotated[
    InternalTokenClaims, Depends(require(scopes=("ecard:manage",), kinds=_PARTNER))
]
QrPrincipal = Annotated[InternalTokenClaims, Depends(require(scopes=("ecard:qr",), kinds=_PARTNER))]
ScanPrincipal = Annotated[
    InternalTokenClaims,
    Depends(require(scopes=("scan",), kinds=(ClientKind.HOSPITAL, ClientKind.SCANNER))),
]
SettlementService = Annotated[InternalTokenClaims, Depends(require_service("settlement"))]
