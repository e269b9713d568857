"""``POST /v1/admin/keys/rotate``: ops rotate one key purpose across the parts that own it.

The gateway answers this route itself (it is listed in the route table with the
gateway as its upstream, so the forwarder has already verified an ops token with
the ``ops`` scope). It rotates its own ``internal`` keys in place and asks each
owning service to rotate through ``/internal/v1/keys/rotate``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.keyrotation import RotatedKeys, RotateRequest, describe, rotate_store
from shared.problems import BadGatewayError, UnauthorizedError, UnprocessableError

OWNERS: dict[str, tuple[str, ...]] = {
    "access": ("identity",),
    "identity-assertion": ("identity",),
    "ecard-credential": ("issuance",),
    "qr": ("issuance",),
    "internal": ("gateway", "identity", "issuance", "settlement"),
}


class RotationResult(BaseModel):
    """What a rotation changed, per part."""

    purpose: str
    rotated: list[RotatedKeys]


async def _rotate_remote(runtime: Any, service: str, purpose: str) -> RotatedKeys:
    """Ask one replica of ``service`` to rotate (they share the key store).

    A replica that refuses the connection is skipped for the next one. Any other failure is
    a 502 without trying another replica: rotation is not idempotent, and a replica that
    timed out may have rotated already (a second rotation would promote a ``next`` key that
    verifiers have not had the JWKS cache period to learn).
    """
    pool = runtime.upstreams[service]
    token = runtime.minter.token_for(service)
    for replica in pool.failover_order():
        try:
            async with pool.session.post(
                replica.base_url + "/internal/v1/keys/rotate",
                json={"purpose": purpose},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise BadGatewayError(f"The {service} service refused the rotation.")
                return RotatedKeys.model_validate(body)
        except aiohttp.ClientConnectorError:
            continue  # nothing was sent: the next replica
        except (aiohttp.ClientError, TimeoutError):
            raise BadGatewayError(f"The {service} service did not confirm the rotation.") from None
    raise BadGatewayError(f"The {service} service is unreachable.")


def keys_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/admin/keys/rotate",
        response_model=RotationResult,
        tags=["operations"],
        summary="Rotate signing keys",
        description=(
            "Promote the published `next` key of a purpose to `current`, keep the old one "
            "verifying for the longest token lifetime plus the JWKS cache period, and publish "
            "a fresh `next`. Purposes: `access`, `identity-assertion`, `ecard-credential`, "
            "`qr`, `internal`."
        ),
    )
    async def rotate(body: RotateRequest, request: Request) -> RotationResult:
        if "essc.principal" not in request.scope:
            raise UnauthorizedError("A bearer token is required.")
        owners = OWNERS.get(body.purpose)
        if owners is None:
            raise UnprocessableError(
                f"Unknown purpose; one of: {', '.join(sorted(OWNERS))}.",
                errors=[{"field": "purpose", "message": "unknown key purpose"}],
            )
        runtime = request.app.state.runtime
        results: list[RotatedKeys] = []
        if "gateway" in owners:
            ring = await asyncio.to_thread(
                rotate_store, runtime.keystore, body.purpose, runtime.settings.jwks_cache_seconds
            )
            runtime.ring = ring
            results.append(describe("gateway", ring, body.purpose))
        remote = [s for s in owners if s != "gateway"]
        results.extend(
            await asyncio.gather(*(_rotate_remote(runtime, s, body.purpose) for s in remote))
        )
        return RotationResult(purpose=body.purpose, rotated=results)

    return router
