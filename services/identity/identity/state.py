"""The identity service's live parts beyond the shared runtime: data keys, limits, SMS, JWKS.

Built by the app's startup hook (never at import time) and kept on
``app.state.identity``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from identity.clients.jwks_fetch import JwksFetcher
from identity.config import IdentitySettings
from identity.verifications.sms import OutboxSmsSender, SmsSender
from shared.app import Runtime
from shared.fieldcrypto import DataKeys, load_data_keys
from shared.kdf import KdfPool
from shared.ratelimit import RateLimiter


@dataclass
class IdentityState:
    """What identity's features need besides the database session and the key ring."""

    settings: IdentitySettings
    runtime: Runtime
    data_keys: DataKeys
    limiter: RateLimiter
    sms: SmsSender
    jwks_fetcher: JwksFetcher
    kdf: KdfPool
    # Ciphertexts decrypted when no holder matched, so that every path does the same work.
    decoy: tuple[str, bytes, bytes] = ("", b"", b"")
    # Parsed client JWKS by (client_id, version marker): avoids re-parsing keys per request.
    client_keys: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


async def build_state(settings: IdentitySettings, runtime: Runtime) -> IdentityState:
    """Load (or, outside production, create) the data keys and open the limiter and fetcher."""
    keys = await asyncio.to_thread(
        load_data_keys, settings.data_keys_path, create=not settings.is_production
    )
    limiter = RateLimiter(
        {
            "verify-client": settings.verification_rate_per_client,
            "verify-id": settings.verification_rate_per_id_number,
            "confirm-client": settings.confirm_rate_per_client,
        },
        redis_url=settings.redis_url,
    )
    fetcher = JwksFetcher(
        allow_insecure=settings.allow_insecure_jwks_uri,
        timeout=settings.jwks_uri_timeout_seconds,
        max_bytes=settings.jwks_uri_max_bytes,
    )
    decoy_ref = "h" + "0" * 24
    decoy = (
        decoy_ref,
        keys.cipher.encrypt("无名氏", table="holder", column="name", row=decoy_ref),
        keys.cipher.encrypt("13000000000", table="holder", column="phone", row=decoy_ref),
    )
    return IdentityState(
        settings=settings,
        runtime=runtime,
        data_keys=keys,
        limiter=limiter,
        sms=OutboxSmsSender(keys),
        jwks_fetcher=fetcher,
        kdf=KdfPool(settings.kdf_threads),
        decoy=decoy,
    )
