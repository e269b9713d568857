"""Issuance through the gateway: QR codes (token only, with PNG) and scans, CPU per operation.

The e-card is written straight into issuance's database with the service's own data keys
(the issue flow needs identity's verification, which is not what is measured here); access
tokens are signed with the cluster's identity key (:mod:`devkit.bench.tokens`). Scans need a
fresh code each: they are minted ahead with issuance's QR key and cycled through by a wrk
Lua script, one code per request.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from devkit.bench.core import Meter, Row, WrkResult, process_groups, wrk
from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.fieldcrypto import load_data_keys
from shared.tokens.claims import ClientKind
from shared.tokens.keys import KeyStore
from shared.tokens.qr import QrPurpose, issue_qr_token

PARTNER = "bench-partner"
PIN = "135790"
PAYERS = 64


async def seed_ecard_async(
    cluster: Cluster, client_id: str, *, sign_level: int = 1, pin_hash: str | None = None
) -> tuple[str, int]:
    """Write one active e-card of ``client_id`` into issuance's database: (ecard_id, seq)."""
    from issuance.models import Ecard  # devkit may know the service it seeds

    keys = load_data_keys(cluster.var_dir / "keys" / "issuance" / "data.json", create=False)
    ecard_id = "ec_" + secrets.token_urlsafe(18)

    def enc(column: str, value: str) -> bytes:
        return keys.cipher.encrypt(value, table="ecard", column=column, row=ecard_id)

    now = datetime.now(UTC)
    engine = create_async_engine(cluster.db_urls["issuance"])
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(Ecard).values(
                    ecard_id=ecard_id,
                    partner_client_id=client_id,
                    holder_ref="h_" + secrets.token_hex(6),
                    link_key=secrets.token_hex(12),
                    pairwise_id=secrets.token_urlsafe(32),
                    card_ref="c_" + secrets.token_hex(6),
                    sign_no="370200" + str(secrets.randbelow(10**12)).zfill(12),
                    sign_seq=1,
                    sign_level=sign_level,
                    status="active",
                    app_suspended=False,
                    card_state="active",
                    region_code="370200",
                    insured_region="370200",
                    insurance_type="employee",
                    gender="female",
                    birth_date_enc=enc("birth_date", "1990-05-05"),
                    name_masked_enc=enc("name_masked", "李*"),
                    id_number_masked_enc=enc("id_number_masked", "3702**********0021"),
                    pin_hash=pin_hash,
                    pin_failures=0,
                    qr_not_before=0,
                    issued_at=now,
                    valid_until=now + timedelta(days=365),
                    updated_at=now,
                )
            )
            seq = (
                await conn.execute(
                    text("SELECT seq FROM ecard WHERE ecard_id = :e"), {"e": ecard_id}
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    return ecard_id, int(seq)


def seed_ecard(cluster: Cluster, client_id: str) -> tuple[str, int]:
    return asyncio.run(seed_ecard_async(cluster, client_id))


def _post_script(directory: Path, path: str, body: str, token: str) -> Path:
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    return script


def _cycle_script(directory: Path, paths: list[str], body: str, token: str) -> Path:
    """POST ``body`` to each of ``paths`` in turn."""
    script = directory / "cycle.lua"
    script.write_text(
        "local paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("POST", paths[((i - 1) % #paths) + 1], '
        '{["Content-Type"] = "application/json",\n'
        f'    ["Authorization"] = "Bearer {token}"}}, {json.dumps(body)})\n'
        "end\n"
    )
    return script


def _scan_script(directory: Path, codes: list[str], token: str) -> Path:
    codes_file = directory / "codes.txt"
    codes_file.write_text("\n".join(codes) + "\n")
    script = directory / "scan.lua"
    script.write_text(
        "local codes = {}\n"
        f'for line in io.lines("{codes_file}") do codes[#codes + 1] = line end\n'
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  local code = codes[((i - 1) % #codes) + 1]\n"
        '  local body = \'{"qr_token":"\' .. code .. \'","purpose":"identity"}\'\n'
        '  return wrk.format("POST", "/v1/scans", {["Content-Type"] = "application/json",\n'
        f'    ["Authorization"] = "Bearer {token}"}}, body)\n'
        "end\n"
    )
    return script


def _row(name: str, result: WrkResult, meter: Meter, unit: str) -> Row:
    return Row(
        "issuance",
        name,
        result.rps,
        result.p50_ms,
        result.p99_ms,
        meter.total / max(result.requests, 1) * 1e6,
        notes=f"errors {result.errors}; CPU µs per {unit}: {meter.note(result.requests)}",
        extra=meter.breakdown(result.requests),
    )


def run(cluster: Cluster, *, duration: int) -> list[Row]:
    """QR token-only, QR with PNG and scans, all through the gateway (wrk -t1 -c32).

    CPU per operation is read per process (gateway, issuance) and for the PostgreSQL server
    processes of issuance's database; the row's figure is gateway + issuance.
    """
    procs = {p: cluster.procs[p].popen.pid for p in ("gateway", "issuance")}
    dbs = {"issuance": cluster.db_urls["issuance"]}
    ecard_id, seq = seed_ecard(cluster, PARTNER)
    partner = access_token(
        cluster, client_id=PARTNER, kind=ClientKind.PARTNER_APP, scope="ecard:qr"
    )
    scanner = access_token(cluster, client_id="bench-hall", kind=ClientKind.SCANNER, scope="scan")
    gateway = cluster.url("gateway")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="essc-bench-issuance-") as tmp:
        folder = Path(tmp)
        script = _post_script(folder, "", '{"purpose":"identity"}', partner)
        for fmt, name in (("none", "QR code, token only"), ("png", "QR code with PNG image")):
            url = f"{gateway}/v1/ecards/{ecard_id}/qrcodes?format={fmt}"
            wrk(url, duration=2, script=script)
            with Meter(process_groups(procs, dbs)) as meter:
                result = wrk(url, duration=duration, script=script)
            rows.append(_row(name, result, meter, "QR issued"))
        # A payment code: the PIN is checked first (one scrypt in a worker thread). Holders
        # ask one at a time: wrk cycles over PAYERS e-cards (concurrent attempts on one card
        # would count as failures and lock it).
        from issuance.ecards.pin import hash_pin
        from shared.kdf import KdfPool

        kdf = KdfPool(1)
        try:
            pin_hash = asyncio.run(hash_pin(PIN, 14, kdf))
        finally:
            kdf.close()

        async def payers() -> list[str]:
            return [
                (await seed_ecard_async(cluster, PARTNER, sign_level=2, pin_hash=pin_hash))[0]
                for _ in range(PAYERS)
            ]

        paths = [f"/v1/ecards/{e}/qrcodes?format=none" for e in asyncio.run(payers())]
        pay = _cycle_script(folder, paths, json.dumps({"purpose": "payment", "pin": PIN}), partner)
        target = gateway + paths[0]
        wrk(target, duration=2, connections=8, script=pay, timeout=20)
        with Meter(process_groups(procs, dbs)) as meter:
            result = wrk(target, duration=2 * duration, connections=8, script=pay, timeout=20)
        rows.append(_row("payment QR code, PIN checked (scrypt), c=8", result, meter, "QR issued"))
        ring = KeyStore(cluster.var_dir / "keys" / "issuance").load()
        key = ring.signing_key("qr")
        now = int(time.time())
        codes = [
            issue_qr_token(key, purpose=QrPurpose.IDENTITY, ecard_seq=seq, iat=now)[0]
            for _ in range(2000 * (duration + 3))
        ]
        warm, main = codes[: 2000 * 2], codes[2000 * 2 :]
        wrk(f"{gateway}/v1/scans", duration=2, script=_scan_script(folder, warm, scanner))
        with Meter(process_groups(procs, dbs)) as meter:
            result = wrk(
                f"{gateway}/v1/scans", duration=duration, script=_scan_script(folder, main, scanner)
            )
        rows.append(_row("scan (one fresh code per request)", result, meter, "scan"))
    return rows
