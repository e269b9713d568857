"""Access tokens for benches, signed with the cluster's own identity key (no OAuth round trip)."""

from __future__ import annotations

import secrets
import time

from devkit.cluster import Cluster
from shared.tokens.claims import ACCESS, AccessTokenClaims, ClientKind
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyStore


def access_token(
    cluster: Cluster,
    *,
    client_id: str,
    kind: ClientKind,
    scope: str,
    region_code: str | None = None,
    level: int | None = None,
    lifetime: int = 600,
) -> str:
    """An ES256 ``at+jwt`` exactly as identity would issue it (its key ring on disk)."""
    ring = KeyStore(cluster.var_dir / "keys" / "identity").load()
    now = int(time.time())
    claims = AccessTokenClaims(
        iss=cluster.url("gateway"),
        aud="urn:essc:api",
        sub=client_id,
        client_id=client_id,
        kind=kind,
        scope=scope,
        region_code=region_code,
        level=level,
        iat=now,
        exp=now + lifetime,
        jti=secrets.token_urlsafe(12),
    )
    return sign_token(ACCESS, claims, ring.signing_key("access"))
