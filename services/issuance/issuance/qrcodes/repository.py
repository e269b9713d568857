"""SQL of QR issuance: one indexed read on the hot-path connection (:mod:`issuance.hotdb`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from issuance.hotdb import HotDb, Sql

_OWNED = Sql(
    "SELECT seq, status, sign_level, pin_hash FROM ecard "
    "WHERE ecard_id = :ecard_id AND partner_client_id = :client_id AND link_key IS NOT NULL"
)


async def owned_for_qr(hotdb: HotDb, ecard_id: str, client_id: str) -> Mapping[str, Any] | None:
    """seq, status, sign_level, pin_hash of the app's linked e-card, or None."""
    return await hotdb.fetchrow(_OWNED, {"ecard_id": ecard_id, "client_id": client_id})
