"""SQL of settlement tokens on the hot-path connection (:mod:`issuance.hotdb`).

Resolve (quote) and redeem (settle) run once per hospital journey each: plain driver
statements, like scanning (the ORM version cost ~2 ms of issuance CPU per journey, see the
README's performance section).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from issuance.hotdb import HotDb, HotTx, Sql

_WITH_ECARD = Sql(
    "SELECT t.scan_id, t.hospital_client_id, t.expires_at, t.redeemed_at, t.redemption_ref, "
    "e.ecard_id, e.holder_ref, e.partner_client_id, e.insured_region, e.insurance_type, "
    "e.birth_date_enc, e.gender, e.sign_level, e.status "
    "FROM settlement_token t JOIN ecard e ON e.seq = t.ecard_seq WHERE t.token_hash = :hash"
)
_REDEEM = Sql(
    "UPDATE settlement_token SET redeemed_at = :now, redemption_ref = :ref "
    "WHERE token_hash = :hash AND hospital_client_id = :hospital AND redeemed_at IS NULL "
    "RETURNING token_hash"
)
_REDEMPTION = Sql(
    "SELECT redeemed_at, redemption_ref FROM settlement_token WHERE token_hash = :hash"
)


async def with_ecard(tx: HotTx | HotDb, token_hash: bytes) -> Mapping[str, Any] | None:
    """The token's row joined with its e-card's, or None (in ``tx``, or a statement alone)."""
    return await tx.fetchrow(_WITH_ECARD, {"hash": token_hash})


async def redeem(tx: HotTx, token_hash: bytes, hospital: str, ref: str, now: datetime) -> bool:
    """Spend the token for ``ref`` if it is unspent and the hospital's own (one UPDATE)."""
    found = await tx.fetchrow(
        _REDEEM, {"hash": token_hash, "hospital": hospital, "ref": ref, "now": now}
    )
    return found is not None


async def redemption(tx: HotTx, token_hash: bytes) -> Mapping[str, Any] | None:
    """``redeemed_at`` and ``redemption_ref`` as committed now."""
    return await tx.fetchrow(_REDEMPTION, {"hash": token_hash})
