"""QR routes for partner apps: JSON with an optional image, or the PNG itself."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response, status

from issuance.deps import ContextDep, QrPrincipal
from issuance.qrcodes import render, service
from issuance.qrcodes.schemas import QrCreate, QrFormat, QrRead
from shared.validation import IdPath

router = APIRouter(prefix="/v1/ecards", tags=["QR codes"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "E-card not active, or payment not enabled."},
    404: {"description": "No such e-card for this app."},
    423: {"description": "Payment locked after five wrong PINs."},
    429: {"description": "Too many codes for this e-card (Retry-After)."},
}


@router.post(
    "/{ecard_id}/qrcodes",
    status_code=status.HTTP_201_CREATED,
    response_model=QrRead,
    response_model_exclude_none=True,
    responses=_ERRORS,
)
async def create_qrcode(
    ecard_id: IdPath,
    body: QrCreate,
    ctx: ContextDep,
    principal: QrPrincipal,
    format: QrFormat = QrFormat.NONE,
) -> QrRead:
    """A one-time QR code valid at most 60 s; payment codes need level 2 and the PIN."""
    return await service.issue(ctx, principal.client_id, ecard_id, body.purpose, body.pin, format)


@router.get(
    "/{ecard_id}/qrcode.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_ERRORS},
)
async def qrcode_png(
    ecard_id: IdPath,
    ctx: ContextDep,
    principal: QrPrincipal,
    purpose: Literal["identity"] = Query(default="identity"),
) -> Response:
    """An identity QR code as a PNG image (payment codes need the PIN: use POST)."""
    qr = await service.issue(ctx, principal.client_id, ecard_id, purpose, None, QrFormat.NONE)
    return Response(
        render.png_bytes(qr.qr_token),
        media_type="image/png",
        headers={
            "Cache-Control": "no-store",
            "X-QR-Expires-At": qr.expires_at.isoformat().replace("+00:00", "Z"),
        },
    )
