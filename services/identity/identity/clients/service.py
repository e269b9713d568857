"""Client rules: registration (kind, scopes, credentials), disabling, internal lookups, keys.

A client authenticates with exactly one credential: a registered JWKS, a
``jwks_uri`` fetched under the SSRF rules, or (sandbox only) a secret stored as
an scrypt hash. Partner apps with a ``webhook_url`` get a webhook secret,
stored encrypted, shown once and handed to issuance over the internal API.
"""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients import repository as repo
from identity.clients.jwks_fetch import JwksFetchError
from identity.clients.keys import JwksInvalidError, keys_by_kid, normalize_jwks
from identity.clients.schemas import KIND_SCOPES, ClientCreate, ClientCreated, ClientRead
from identity.clients.secrets import hash_secret, new_secret, new_webhook_secret
from identity.errors import ClientNotFoundError, ClientRejectedError
from identity.models import Client
from identity.state import IdentityState
from identity.timeutil import aware
from identity.timeutil import now as utcnow
from shared.fieldcrypto import DataKeys
from shared.tokens.claims import ClientKind
from shared.wire import ClientInfo

_PREFIX = {
    ClientKind.PARTNER_APP: "app",
    ClientKind.HOSPITAL: "hos",
    ClientKind.SCANNER: "scn",
    ClientKind.OPS: "ops",
    ClientKind.FACE_PROVIDER: "fce",
}


def _errors(body: ClientCreate) -> list[dict[str, str]]:
    kind = ClientKind(body.kind)
    errors: list[dict[str, str]] = []
    credentials = [body.jwks is not None, body.jwks_uri is not None, body.sandbox_secret is True]
    if sum(credentials) != 1:
        errors.append(
            {"field": "jwks", "message": "give exactly one of jwks, jwks_uri or sandbox_secret"}
        )
    if kind is ClientKind.HOSPITAL:
        if body.region_code is None:
            errors.append({"field": "region_code", "message": "required for hospitals"})
        if body.level is None:
            errors.append({"field": "level", "message": "required for hospitals (1 to 3)"})
    elif body.level is not None:
        errors.append({"field": "level", "message": "only hospitals have a level"})
    if body.webhook_url is not None and kind is not ClientKind.PARTNER_APP:
        errors.append({"field": "webhook_url", "message": "only partner apps receive webhooks"})
    if body.scopes is not None:
        allowed = KIND_SCOPES[kind]
        for i, scope in enumerate(body.scopes):
            if scope not in allowed:
                errors.append(
                    {"field": f"scopes[{i}]", "message": f"not a scope of a {kind.value} client"}
                )
    if kind is ClientKind.FACE_PROVIDER and body.sandbox_secret:
        errors.append({"field": "sandbox_secret", "message": "face providers sign with keys"})
    return errors


def read_model(client: Client) -> ClientRead:
    return ClientRead(
        client_id=client.client_id,
        kind=client.kind,
        name=client.name,
        region_code=client.region_code,
        level=client.level,
        scopes=client.scopes.split(),
        status=client.status,
        created_at=aware(client.created_at),
        disabled_at=aware(client.disabled_at) if client.disabled_at else None,
    )


async def register(
    session: AsyncSession, state: IdentityState, body: ClientCreate
) -> ClientCreated:
    """Register a client. 422 (naming the field) for an inconsistent body, a bad JWKS or a
    ``jwks_uri`` that may not be fetched or does not answer a valid JWKS."""
    errors = _errors(body)
    if errors:
        raise ClientRejectedError("The client registration is inconsistent.", errors=errors)
    kind = ClientKind(body.kind)
    jwks: dict[str, Any] | None = None
    try:
        if body.jwks is not None:
            jwks = normalize_jwks(body.jwks)
        elif body.jwks_uri is not None:
            jwks = normalize_jwks(await state.jwks_fetcher.fetch(body.jwks_uri))
    except JwksInvalidError as exc:
        field = "jwks" if body.jwks is not None else "jwks_uri"
        raise ClientRejectedError(
            f"The {field} is not acceptable.", errors=[{"field": field, "message": str(exc)}]
        ) from None
    except JwksFetchError as exc:
        raise ClientRejectedError(
            "The jwks_uri could not be used.", errors=[{"field": "jwks_uri", "message": exc.reason}]
        ) from None
    ts = utcnow()
    client_id = f"{_PREFIX[kind]}_{secrets.token_hex(8)}"
    secret = new_secret() if body.sandbox_secret else None
    secret_hash = (
        await state.kdf.run(hash_secret, secret, n=state.settings.secret_scrypt_n)
        if secret
        else None
    )
    webhook_secret = new_webhook_secret() if body.webhook_url else None
    scopes = body.scopes if body.scopes is not None else sorted(KIND_SCOPES[kind])
    client = Client(
        client_id=client_id,
        kind=kind.value,
        name=body.name,
        region_code=body.region_code,
        level=body.level,
        scopes=" ".join(dict.fromkeys(scopes)),
        status="active",
        jwks=jwks,
        jwks_uri=body.jwks_uri,
        jwks_fetched_at=ts if body.jwks_uri else None,
        secret_hash=secret_hash,
        webhook_url=body.webhook_url,
        webhook_secret_enc=_seal_webhook_secret(state.data_keys, client_id, webhook_secret),
        created_at=ts,
    )
    await repo.add(session, client)
    read = read_model(client)
    return ClientCreated(**read.model_dump(), client_secret=secret, webhook_secret=webhook_secret)


def _seal_webhook_secret(keys: DataKeys, client_id: str, secret: str | None) -> bytes | None:
    if secret is None:
        return None
    return keys.cipher.encrypt(secret, table="client", column="webhook_secret", row=client_id)


async def disable(session: AsyncSession, client_id: str) -> ClientRead:
    """Disable a client (idempotent); its tokens stop working at the gateway within seconds
    and it cannot obtain new ones. 404 if unknown."""
    client = await repo.get(session, client_id)
    if client is None:
        raise ClientNotFoundError("No such client.")
    await repo.disable(session, client_id, utcnow())
    await session.flush()
    await session.refresh(client)
    return read_model(client)


async def client_info(session: AsyncSession, keys: DataKeys, client_id: str) -> ClientInfo:
    """What issuance needs to know about a client, including its webhook secret. 404."""
    client = await repo.get(session, client_id)
    if client is None:
        raise ClientNotFoundError("No such client.")
    secret = (
        keys.cipher.decrypt(
            client.webhook_secret_enc, table="client", column="webhook_secret", row=client_id
        )
        if client.webhook_secret_enc
        else None
    )
    return ClientInfo(
        client_id=client.client_id,
        kind=client.kind,
        name=client.name,
        region_code=client.region_code,
        level=client.level,
        status=client.status,
        webhook_url=client.webhook_url,
        webhook_secret=secret,
    )


class ClientKeySource:
    """An AsyncKeySource over one client's registered keys (``jwks`` or ``jwks_uri``)."""

    def __init__(self, session: AsyncSession, state: IdentityState, client: Client) -> None:
        self.session, self.state, self.client = session, state, client

    async def get_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        return await verification_keys(self.session, self.state, self.client, kid)


async def verification_keys(
    session: AsyncSession, state: IdentityState, client: Client, kid: str
) -> ec.EllipticCurvePublicKey | None:
    """The client's public key for ``kid``. For a ``jwks_uri`` client an unknown kid triggers
    one refetch, at most once per ``jwks_uri_min_refresh_seconds``; a failed refetch keeps
    the keys already known."""
    marker = f"{client.jwks_fetched_at}"
    cache_key = (client.client_id, marker)
    keys = state.client_keys.get(cache_key)
    if keys is None:
        keys = keys_by_kid(client.jwks or {})
        state.client_keys[cache_key] = keys
    key = keys.get(kid)
    if key is not None or client.jwks_uri is None:
        return key
    last = aware(client.jwks_fetched_at) if client.jwks_fetched_at else None
    ts = utcnow()
    if (
        last is not None
        and (ts - last).total_seconds() < state.settings.jwks_uri_min_refresh_seconds
    ):
        return None
    try:
        jwks = normalize_jwks(await state.jwks_fetcher.fetch(client.jwks_uri))
    except (JwksFetchError, JwksInvalidError):
        return None
    await repo.store_jwks(session, client.client_id, jwks, ts)
    fresh = keys_by_kid(jwks)
    state.client_keys[(client.client_id, f"{ts}")] = fresh
    return fresh.get(kid)
