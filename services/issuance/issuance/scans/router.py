"""``POST /v1/scans`` for hospitals and scanners."""

from __future__ import annotations

from fastapi import APIRouter, status

from issuance.deps import ContextDep, ScanPrincipal
from issuance.scans import service
from issuance.scans.schemas import ScanCreate, ScanRead

router = APIRouter(prefix="/v1/scans", tags=["Scanning"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScanRead,
    response_model_exclude_none=True,
    responses={
        403: {"description": "ecard-not-active: the e-card is suspended, revoked or unlinked."},
        409: {"description": "qr-already-used"},
        422: {"description": "qr-invalid (forged or malformed) or qr-expired"},
    },
)
async def create_scan(body: ScanCreate, ctx: ContextDep, principal: ScanPrincipal) -> ScanRead:
    """Exchange a QR code for the holder's masked identity (and a settlement token)."""
    return await service.scan(ctx, principal, body.qr_token, body.purpose)
