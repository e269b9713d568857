"""Face attestations: a registered face-verification provider vouches for a live face.

The attestation is an ES256 JWT (``typ essc-face+jwt``) whose ``iss`` is the
provider's client id (a registered client of kind ``face_provider``, its keys
registered like any client's), ``aud`` the platform's public issuer,
``id_number_sha256`` the hex SHA-256 of the ID number being verified, and
``liveness`` and ``match`` scores at or above the thresholds in settings. Each
attestation works once (its ``jti`` is kept until it expires).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients import repository as clients_repo
from identity.clients.service import ClientKeySource
from identity.errors import FaceAttestationRejectedError
from identity.holders.crypto import id_number_sha256
from identity.oauth import repository as jti_repo
from identity.state import IdentityState
from shared.auth import _unverified_issuer
from shared.tokens.claims import FACE_ATTESTATION, ClientKind
from shared.tokens.codec import MAX_LEEWAY, InvalidTokenError, verify_token_async


async def check_attestation(
    session: AsyncSession, state: IdentityState, token: str, id_number: str
) -> str:
    """The provider's client id if the attestation holds for ``id_number``; 422 otherwise."""
    provider_id = _unverified_issuer(token)
    provider = await clients_repo.get(session, provider_id) if provider_id else None
    if (
        provider is None
        or provider.kind != ClientKind.FACE_PROVIDER.value
        or provider.status != "active"
        or provider.jwks is None
    ):
        raise FaceAttestationRejectedError(
            "The face attestation is not from a registered provider."
        )
    try:
        claims = await verify_token_async(
            token,
            FACE_ATTESTATION,
            keys=ClientKeySource(session, state, provider),
            issuer=provider.client_id,
            audience=state.settings.public_issuer,
        )
    except InvalidTokenError as exc:
        raise FaceAttestationRejectedError(
            f"The face attestation was rejected: {exc.reason}."
        ) from None
    if not hmac.compare_digest(claims.id_number_sha256, id_number_sha256(id_number)):
        raise FaceAttestationRejectedError("The face attestation is for another person.")
    if (
        claims.liveness < state.settings.face_min_liveness
        or claims.match < state.settings.face_min_match
    ):
        raise FaceAttestationRejectedError("The face attestation's scores are below the threshold.")
    expires = datetime.fromtimestamp(claims.exp + MAX_LEEWAY, tz=UTC)
    if not await jti_repo.claim_jti(session, provider.client_id, claims.jti, expires):
        raise FaceAttestationRejectedError("The face attestation was already used.")
    return provider.client_id
