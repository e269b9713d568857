"""Two real issuance processes on one PostgreSQL database: single use and status, everywhere.

The gateway process runs only to publish the internal-token keys; the test mints the
internal tokens the gateway would (its key ring on disk) and calls both issuance processes
directly, alternating between them. The e-card row is written with the service's own data
keys, since identity (which the issue flow needs) is not part of this test.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from devkit.cluster import SERVICES, Cluster
from issuance.models import Ecard
from shared.fieldcrypto import load_data_keys
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyStore
from support.pg import async_url, create_databases, drop_databases

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    names = {svc: f"essc_{run_id}r_{svc}" for svc in SERVICES}
    asyncio.run(create_databases(names.values()))
    c = Cluster.on_free_ports(
        tmp,
        {svc: async_url(name) for svc, name in names.items()},
        environment="test",
        replicas={"issuance": 2},
        extra_env={"ISSUANCE_LOG_REQUESTS": "false", "ISSUANCE_QR_RATE_LIMIT": "1000/minute"},
    )
    try:
        c.run_cli("issuance", "migrate")
        c.start(["gateway", "issuance"])
        c.wait_ready(["gateway"], path="/livez")
        c.wait_ready(["issuance", "issuance-2"])
        yield c
    finally:
        c.stop()
        asyncio.run(drop_databases(names.values()))


def token(cluster: Cluster, client_id: str, kind: ClientKind, scope: str) -> dict[str, str]:
    ring = KeyStore(cluster.var_dir / "keys" / "gateway").load()
    now = int(time.time())
    claims = InternalTokenClaims(
        iss="urn:essc:gateway",
        sub=client_id,
        aud="urn:essc:issuance",
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(12),
        client_id=client_id,
        kind=kind,
        scope=scope,
    )
    return {"Authorization": "Bearer " + sign_token(INTERNAL, claims, ring.signing_key("internal"))}


async def seed_ecard(cluster: Cluster, client_id: str) -> str:
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
                    holder_ref="h_" + secrets.token_hex(4),
                    link_key=secrets.token_hex(8),
                    pairwise_id=secrets.token_urlsafe(32),
                    card_ref="c_1",
                    sign_no="370200" + str(secrets.randbelow(10**12)).zfill(12),
                    sign_seq=1,
                    sign_level=1,
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
                    pin_failures=0,
                    qr_not_before=0,
                    issued_at=now,
                    valid_until=now + timedelta(days=365),
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()
    return ecard_id


async def new_qr(client: httpx.AsyncClient, cluster: Cluster, base: str, ecard_id: str) -> str:
    resp = await client.post(
        f"{base}/v1/ecards/{ecard_id}/qrcodes",
        json={"purpose": "identity"},
        headers=token(cluster, "app-a", ClientKind.PARTNER_APP, "ecard:qr ecard:manage"),
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["qr_token"])


@pytest.mark.asyncio
async def test_twenty_concurrent_scans_across_two_processes_succeed_once(
    cluster: Cluster,
) -> None:
    ecard_id = await seed_ecard(cluster, "app-a")
    bases = [cluster.url("issuance"), cluster.url("issuance-2")]
    scanner = token(cluster, "hall-1", ClientKind.SCANNER, "scan")
    async with httpx.AsyncClient(timeout=30) as client:
        for round_ in range(2):
            qr = await new_qr(client, cluster, bases[round_ % 2], ecard_id)
            body = {"qr_token": qr, "purpose": "identity"}
            results = await asyncio.gather(
                *(
                    client.post(f"{bases[i % 2]}/v1/scans", json=body, headers=scanner)
                    for i in range(20)
                )
            )
            codes = sorted(r.status_code for r in results)
            assert codes == [201] + [409] * 19, codes
            for r in results:
                if r.status_code == 409:
                    assert r.json()["type"].endswith("qr-already-used")
                else:
                    assert r.json()["holder"]["name_masked"] == "李*"


@pytest.mark.asyncio
async def test_status_change_on_one_process_stops_scans_on_the_other(cluster: Cluster) -> None:
    ecard_id = await seed_ecard(cluster, "app-a")
    one, two = cluster.url("issuance"), cluster.url("issuance-2")
    manage = token(cluster, "app-a", ClientKind.PARTNER_APP, "ecard:manage ecard:qr")
    scanner = token(cluster, "hall-1", ClientKind.SCANNER, "scan")
    async with httpx.AsyncClient(timeout=30) as client:
        qr = await new_qr(client, cluster, two, ecard_id)
        resp = await client.post(f"{one}/v1/ecards/{ecard_id}/suspend", headers=manage)
        assert resp.status_code == 200
        assert resp.json()["status"] == "suspended"
        scan = await client.post(
            f"{two}/v1/scans", json={"qr_token": qr, "purpose": "identity"}, headers=scanner
        )
        assert scan.status_code == 403
        assert scan.json()["type"].endswith("ecard-not-active")
        resp = await client.post(f"{two}/v1/ecards/{ecard_id}/resume", headers=manage)
        assert resp.json()["status"] == "active"
        scan = await client.post(
            f"{one}/v1/scans", json={"qr_token": qr, "purpose": "identity"}, headers=scanner
        )
        assert scan.status_code == 201
        # Another app sees none of it.
        other = token(cluster, "app-b", ClientKind.PARTNER_APP, "ecard:manage ecard:qr")
        assert (await client.get(f"{two}/v1/ecards/{ecard_id}", headers=other)).status_code == 404


def test_logs_carry_no_tokens_or_personal_data(cluster: Cluster) -> None:
    text = ""
    for name in ("issuance", "issuance-2"):
        path: Path = cluster.procs[name].log_path
        text += path.read_text(errors="replace")
    assert "李*" not in text
    assert "eyJ" not in text
    assert "3702**" not in text
