"""The e-card web page (through the gateway's public ``/h5/...`` routes) and its link."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel
from starlette.responses import HTMLResponse

from issuance.deps import ContextDep, QrPrincipal, SessionDep
from issuance.ecards import service as ecard_service
from issuance.errors import SessionExpiredError
from issuance.h5 import service
from issuance.qrcodes.schemas import QrRead
from shared.openapi import PUBLIC, problems
from shared.problems import NotFoundError
from shared.validation import IdPath

router = APIRouter(tags=["E-card web page"])

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_ASSETS = {"ecard.css": "text/css; charset=utf-8", "ecard.js": "text/javascript; charset=utf-8"}

SessionToken = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The link's token (from `POST /v1/ecards/{ecard_id}/h5-sessions`).",
    ),
]
_HTML = {"text/html": {"schema": {"type": "string"}}}
_EXPIRED = problems(410, s410="The link is not valid or has expired.")


@lru_cache(maxsize=8)
def _file(folder: str, name: str) -> bytes:
    return resources.files("issuance.h5").joinpath(folder, name).read_bytes()


class H5SessionRead(BaseModel):
    url: str
    expires_at: datetime


@router.post(
    "/v1/ecards/{ecard_id}/h5-sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=H5SessionRead,
    responses={404: {"description": "No such e-card for this app."}},
)
async def create_h5_session(
    ecard_id: IdPath, session: SessionDep, ctx: ContextDep, principal: QrPrincipal
) -> H5SessionRead:
    """A short-lived link to the e-card's web page, for the app's web view."""
    ecard = await ecard_service.get_owned(session, ecard_id, principal.client_id)
    url, expires_at = await service.create(session, ctx, ecard)
    return H5SessionRead(url=url, expires_at=expires_at)


@router.get(
    "/h5/ecard/{session_token}",
    response_class=HTMLResponse,
    summary="The e-card web page (for the partner app's web view)",
    responses={
        200: {"description": "The page.", "content": _HTML},
        410: {"description": "The link is not valid or has expired.", "content": _HTML},
    },
    openapi_extra=PUBLIC,
)
async def page(session_token: SessionToken, session: SessionDep) -> Response:
    try:
        await service.ecard_for(session, session_token)
    except SessionExpiredError:
        return HTMLResponse(_file("templates", "expired.html"), 410, headers=_PAGE_HEADERS)
    return HTMLResponse(_file("templates", "ecard.html"), headers=_PAGE_HEADERS)


class CardAccount(BaseModel):
    year: int
    balance: str
    fund_paid: str
    cap_remaining: str


class CardSettlement(BaseModel):
    settled_at: str
    hospital_name: str
    total: str
    fund_pay: str
    account_pay: str
    cash_pay: str
    refunded: bool


class CardFace(BaseModel):
    """What the page shows: masked identity, the card, and (when known) the account."""

    name_masked: str
    id_number_masked: str
    region_code: str
    region_name: str | None
    insured_region: str
    sign_no: str
    sign_level: int
    status: str
    valid_until: str
    account: CardAccount | None = None
    recent: list[CardSettlement] | None = None


@router.get(
    "/h5/ecard/{session_token}/data",
    summary="The page's data (masked)",
    responses={200: {"model": CardFace}, **_EXPIRED},
    openapi_extra=PUBLIC,
)
async def data(session_token: SessionToken, session: SessionDep, ctx: ContextDep) -> Any:
    ecard = await service.ecard_for(session, session_token)
    body = await service.card_face(ctx, ecard)
    return _no_store(body)


@router.post(
    "/h5/ecard/{session_token}/qrcode",
    response_model=QrRead,
    response_model_exclude_none=True,
    summary="A fresh identity QR code for the page",
    responses={**_EXPIRED, **problems(403, s403="The e-card is not active.")},
    openapi_extra=PUBLIC,
)
async def qrcode(session_token: SessionToken, session: SessionDep, ctx: ContextDep) -> QrRead:
    ecard = await service.ecard_for(session, session_token)
    return await service.qrcode(ctx, ecard)


@router.get(
    "/h5/static/{asset}",
    response_class=Response,
    summary="The page's stylesheet and script",
    responses={
        200: {
            "description": "The asset.",
            "content": {
                "text/css": {"schema": {"type": "string"}},
                "text/javascript": {"schema": {"type": "string"}},
            },
        }
    },
    openapi_extra=PUBLIC,
)
async def static(
    asset: Annotated[str, Path(max_length=64, examples=["ecard.css"])], request: Request
) -> Response:
    media = _ASSETS.get(asset)
    if media is None:
        raise NotFoundError("No such asset.")
    return Response(
        _file("static", asset),
        media_type=media,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


def _no_store(body: dict[str, Any]) -> Response:
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
