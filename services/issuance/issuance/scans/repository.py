"""SQL of scanning on the hot-path connection (:mod:`issuance.hotdb`).

One read of the e-card by primary key, the jti claim and scan record in one
``INSERT ... ON CONFLICT (jti) DO NOTHING``, then (hospitals' payment codes) the settlement
token: all inside the caller's single transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from issuance.hotdb import HotTx, Sql

_ECARD = Sql(
    "SELECT seq, ecard_id, status, sign_level, qr_not_before, insured_region, gender, "
    "name_masked_enc, id_number_masked_enc FROM ecard WHERE seq = :seq"
)
_CLAIM = Sql(
    "INSERT INTO scan (scan_id, jti, ecard_seq, scanner_client_id, purpose, qr_purpose, "
    "qr_expires_at, created_at) VALUES (:scan_id, :jti, :seq, :client, :purpose, :qr_purpose, "
    ":qr_expires_at, :now) ON CONFLICT (jti) DO NOTHING RETURNING scan_id"
)
_TOKEN = Sql(
    "INSERT INTO settlement_token (token_hash, scan_id, ecard_seq, hospital_client_id, "
    "expires_at, created_at) VALUES (:hash, :scan_id, :seq, :client, :expires_at, :now)"
)


async def ecard_for_scan(tx: HotTx, seq: int) -> Mapping[str, Any] | None:
    return await tx.fetchrow(_ECARD, {"seq": seq})


async def claim(tx: HotTx, values: Mapping[str, Any]) -> bool:
    """Record the scan and spend its jti; False if the jti was already spent."""
    return await tx.fetchrow(_CLAIM, values) is not None


async def add_settlement_token(tx: HotTx, values: Mapping[str, Any]) -> None:
    await tx.execute(_TOKEN, values)
