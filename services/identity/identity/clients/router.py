"""Client routes: ops registration and disabling; internal lookups for issuance and gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from identity.clients import repository, service
from identity.clients.schemas import ClientCreate, ClientCreated, ClientRead
from identity.deps import GatewayServiceDep, IssuanceDep, OpsDep, SessionDep, StateDep
from identity.docs import problems
from shared.wire import ClientInfo, DisabledClients

router = APIRouter()

ClientId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9_:-]+$")]


@router.post(
    "/v1/admin/clients",
    status_code=201,
    response_model=ClientCreated,
    response_model_exclude_none=True,
    tags=["operations"],
    summary="Register a partner app, hospital, scanner, ops client or face provider",
    responses=problems(401, 403, 422),
)
async def register_client(
    body: ClientCreate, session: SessionDep, state: StateDep, _ops: OpsDep
) -> ClientCreated:
    """Scopes must belong to the kind (API.md, "Clients and scopes"); hospitals need
    `region_code` and `level`. Exactly one credential: `jwks` (ES256 public keys), `jwks_uri`
    (https, public address, fetched once now and again on an unknown kid) or
    `sandbox_secret: true` (HTTP Basic; the secret is in the answer, shown once). A partner
    app with a `webhook_url` also gets its `webhook_secret`, shown once."""
    return await service.register(session, state, body)


@router.post(
    "/v1/admin/clients/{client_id}/disable",
    response_model=ClientRead,
    tags=["operations"],
    summary="Disable a client; its tokens stop working within their lifetime",
    responses=problems(401, 403, 404),
)
async def disable_client(client_id: ClientId, session: SessionDep, _ops: OpsDep) -> ClientRead:
    """Idempotent. The client gets no new token, and the gateway refuses its still-valid
    tokens within seconds (it polls the list of disabled clients)."""
    return await service.disable(session, client_id)


@router.get(
    "/internal/v1/clients/disabled",
    response_model=DisabledClients,
    tags=["internal"],
    summary="Disabled clients (the gateway polls this)",
    responses=problems(401, 403),
)
async def disabled_clients(session: SessionDep, _gw: GatewayServiceDep) -> DisabledClients:
    return DisabledClients(client_ids=await repository.disabled_ids(session))


@router.get(
    "/internal/v1/clients/{client_id}",
    response_model=ClientInfo,
    tags=["internal"],
    summary="A client's kind, status and webhook settings (issuance)",
    responses=problems(401, 403, 404),
)
async def client_info(
    client_id: ClientId, session: SessionDep, state: StateDep, _caller: IssuanceDep
) -> ClientInfo:
    return await service.client_info(session, state.data_keys, client_id)
