"""``POST /v1/settlements/quotes`` (hospitals, national code 2206)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from settlement import idempotent, rawsql
from settlement.db import SessionDep
from settlement.deps import HospitalWrite, PartsDep, RuntimeDep
from settlement.quotes import service
from settlement.quotes.schemas import QuoteCreate, QuoteRead

router = APIRouter(tags=["settlement"])


@router.post("/v1/settlements/quotes", status_code=201, response_model=QuoteRead)
async def create_quote(
    body: QuoteCreate,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    parts: PartsDep,
    principal: HospitalWrite,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Pre-settle a bill: the split line by line and the rules applied; commits no money.

    The quote assumes the holder's current balance and annual totals and expires after ten
    minutes; settle it with ``POST /v1/settlements``. ``Idempotency-Key`` is optional here.
    """
    if idempotency_key is None:
        # One read and one INSERT, no money: no transaction round trips (rawsql.autocommit).
        # With a key, the claim, the quote and the stored answer commit together.
        rawsql.autocommit(session)
    return await idempotent.retrying(
        session,
        lambda: idempotent.run(
            request,
            session,
            parts,
            client_id=principal.client_id,
            key_header=idempotency_key,
            required=False,
            status_code=201,
            work=lambda: service.create(session, runtime, parts, principal, body),
        ),
    )
