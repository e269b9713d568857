"""Signing-key rotation without downtime: the rule, the internal route and the command line.

A purpose's ``next`` key is published in the JWKS from the moment it is created.
Rotation promotes it to ``current`` (it signs from now on), demotes the old
current key to ``previous`` — still published and still verifying — for the
longest lifetime of a token it signed plus the JWKS cache period, and creates a
fresh ``next``. Verifiers that cached the JWKS before the rotation already hold
the new signing key, and tokens signed before it keep verifying until they
expire. Every replica re-reads the key file within seconds (see
``shared.app``), so no process restarts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from shared.auth import require_service
from shared.problems import NotFoundError
from shared.tokens.claims import (
    ACCESS,
    ECARD_CREDENTIAL,
    IDENTITY_ASSERTION,
    INTERNAL,
)
from shared.tokens.keys import KeyRing, KeyState, KeyStore

QR_MAX_LIFETIME = 60

# The longest lifetime of a token each key purpose signs.
PURPOSE_MAX_LIFETIME: dict[str, int] = {
    "access": ACCESS.max_lifetime,
    "identity-assertion": IDENTITY_ASSERTION.max_lifetime,
    "ecard-credential": ECARD_CREDENTIAL.max_lifetime,
    "qr": QR_MAX_LIFETIME,
    "internal": INTERNAL.max_lifetime,
}


def retention(purpose: str, jwks_cache_seconds: float) -> timedelta:
    """How long a demoted key keeps verifying: longest token lifetime + JWKS cache period."""
    return timedelta(seconds=PURPOSE_MAX_LIFETIME.get(purpose, 3600) + jwks_cache_seconds)


class RotateRequest(BaseModel):
    """Which key purpose to rotate."""

    model_config = {"extra": "forbid"}

    purpose: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z-]*$")


class RotatedKeys(BaseModel):
    """The key states of one purpose in one part after a rotation."""

    service: str
    purpose: str
    current_kid: str
    next_kid: str | None
    previous_kids: list[str]
    previous_retire_at: datetime | None


def describe(service: str, ring: KeyRing, purpose: str) -> RotatedKeys:
    """The public view of ``purpose``'s keys in ``ring``."""
    mine = [k for k in ring.keys if k.purpose == purpose]
    previous = [k for k in mine if k.state is KeyState.PREVIOUS]
    nxt = next((k.kid for k in mine if k.state is KeyState.NEXT), None)
    retire = max((k.retires_at for k in previous if k.retires_at), default=None)
    return RotatedKeys(
        service=service,
        purpose=purpose,
        current_kid=ring.signing_key(purpose).kid,
        next_kid=nxt,
        previous_kids=[k.kid for k in previous],
        previous_retire_at=retire,
    )


def rotate_store(store: KeyStore, purpose: str, jwks_cache_seconds: float) -> KeyRing:
    """Rotate ``purpose`` in the key file (under its lock)."""
    return store.rotate(
        purpose, now=datetime.now(UTC), retain=retention(purpose, jwks_cache_seconds)
    )


def rotation_router() -> APIRouter:
    """``POST /internal/v1/keys/rotate``: the gateway asks a service to rotate one purpose."""
    router = APIRouter(include_in_schema=False)

    @router.post("/internal/v1/keys/rotate", dependencies=[Depends(require_service("gateway"))])
    async def rotate(body: RotateRequest, request: Request) -> RotatedKeys:
        runtime: Any = request.app.state.runtime
        if body.purpose not in runtime.ring.purposes:
            raise NotFoundError(f"This service has no {body.purpose!r} keys.")
        ring = await asyncio.to_thread(
            rotate_store, runtime.keystore, body.purpose, runtime.settings.jwks_cache_seconds
        )
        runtime.ring = ring
        return describe(runtime.service, ring, body.purpose)

    return router


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.keyrotation --keys-dir var/keys/identity --purpose access``.

    The command-line equivalent of ``POST /v1/admin/keys/rotate`` for one part's key
    file (running replicas pick the change up within seconds).
    """
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m shared.keyrotation", description=main.__doc__)
    parser.add_argument("--keys-dir", required=True, type=Path)
    parser.add_argument("--purpose", required=True, choices=sorted(PURPOSE_MAX_LIFETIME))
    parser.add_argument("--jwks-cache-seconds", type=float, default=300.0)
    parser.add_argument("--service", default=None, help="name shown in the output")
    args = parser.parse_args(argv)
    store = KeyStore(args.keys_dir)
    ring = rotate_store(store, args.purpose, args.jwks_cache_seconds)
    service = args.service or args.keys_dir.name
    print(json.dumps(describe(service, ring, args.purpose).model_dump(mode="json"), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
