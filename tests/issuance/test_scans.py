"""Scanning in process: outcomes, single use, settlement tokens and their internal redemption."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shared.tokens.qr import QrPurpose, issue_qr_token
from support.issuance_env import IssuanceEnv, issuance_env

pytestmark = pytest.mark.asyncio


def slug(resp: Any) -> str:
    return str(resp.json()["type"]).rsplit("/", 1)[-1]


async def qr(env: IssuanceEnv, ecard_id: str, purpose: str = "identity", **extra: Any) -> str:
    resp = await env.client.post(
        f"/v1/ecards/{ecard_id}/qrcodes",
        json={"purpose": purpose, **extra},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["qr_token"])


async def test_identity_scan_answers_masked_identity_once(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    token = await qr(env, card["ecard_id"])
    body = {"qr_token": token, "purpose": "identity"}
    resp = await env.client.post("/v1/scans", json=body, headers=env.peers.scanner())
    assert resp.status_code == 201, resp.text
    scan = resp.json()
    assert scan["holder"] == {
        "name_masked": "张**",
        "id_number_masked": "3604**********0071",
        "gender": "male",
        "insured_region": "370200",
        "card_status": "active",
    }
    assert scan["sign_level"] == 1
    assert "settlement_token" not in scan
    again = await env.client.post("/v1/scans", json=body, headers=env.peers.hospital())
    assert again.status_code == 409
    assert slug(again) == "qr-already-used"


async def test_forged_malformed_and_expired_codes(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    token = await qr(env, card["ecard_id"])
    headers = env.peers.scanner()
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
    for bad in (tampered, "hello", token[:-1]):
        resp = await env.client.post(
            "/v1/scans", json={"qr_token": bad, "purpose": "identity"}, headers=headers
        )
        assert resp.status_code == 422, bad
        assert slug(resp) == "qr-invalid", bad
    key = env.ctx.runtime.ring.signing_key("qr")
    row = await _seq_of(env, card["ecard_id"])
    old, _ = issue_qr_token(
        key, purpose=QrPurpose.IDENTITY, ecard_seq=row, iat=int(time.time()) - 120, lifetime=60
    )
    resp = await env.client.post(
        "/v1/scans", json={"qr_token": old, "purpose": "identity"}, headers=headers
    )
    assert resp.status_code == 422
    assert slug(resp) == "qr-expired"
    metrics = (await env.client.get("/metrics")).text
    assert 'essc_qr_scans_total{outcome="invalid"} 3.0' in metrics
    assert 'essc_qr_scans_total{outcome="expired"} 1.0' in metrics


async def _seq_of(env: IssuanceEnv, ecard_id: str) -> int:
    from sqlalchemy import text

    async with env.ctx.runtime.db.sessionmaker() as session:
        value = (
            await session.execute(
                text("SELECT seq FROM ecard WHERE ecard_id = :e"), {"e": ecard_id}
            )
        ).scalar_one()
    return int(value)


async def test_suspended_or_unlinked_ecard_scans_403(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    headers = env.peers.partner("app-a")
    token = await qr(env, card["ecard_id"])
    await env.client.post(f"/v1/ecards/{card['ecard_id']}/suspend", headers=headers)
    resp = await env.client.post(
        "/v1/scans", json={"qr_token": token, "purpose": "identity"}, headers=env.peers.scanner()
    )
    assert resp.status_code == 403
    assert slug(resp) == "ecard-not-active"
    await env.client.post(f"/v1/ecards/{card['ecard_id']}/resume", headers=headers)
    await env.client.delete(f"/v1/ecards/{card['ecard_id']}", headers=headers)
    resp = await env.client.post(
        "/v1/scans", json={"qr_token": token, "purpose": "identity"}, headers=env.peers.scanner()
    )
    assert resp.status_code == 403
    assert slug(resp) == "ecard-not-active"


async def test_hospital_payment_scan_gets_a_settlement_token_that_redeems_once(
    env: IssuanceEnv,
) -> None:
    card = await env.issue(env.peers.add_holder())
    await env.enable_payment(card["ecard_id"])
    token = await qr(env, card["ecard_id"], "payment", pin="135790")
    resp = await env.client.post(
        "/v1/scans",
        json={"qr_token": token, "purpose": "settlement"},
        headers=env.peers.hospital("hosp-1"),
    )
    assert resp.status_code == 201, resp.text
    scan = resp.json()
    st = scan["settlement_token"]
    assert len(st) == 40
    assert scan["sign_level"] == 2
    svc = env.peers.settlement_service()
    base = {"settlement_token": st, "hospital_client_id": "hosp-1"}
    info = await env.client.post("/internal/v1/settlement-tokens/resolve", json=base, headers=svc)
    assert info.status_code == 200
    assert info.json()["ecard_id"] == card["ecard_id"]
    assert info.json()["redeemed_at"] is None
    assert info.json()["birth_date"] == "1991-01-01"
    other = {**base, "hospital_client_id": "hosp-2"}
    resp = await env.client.post("/internal/v1/settlement-tokens/resolve", json=other, headers=svc)
    assert resp.status_code == 404
    assert slug(resp) == "settlement-token-invalid"
    redeem = {**base, "redemption_ref": "q-1"}
    first = await env.client.post("/internal/v1/settlement-tokens/redeem", json=redeem, headers=svc)
    assert first.status_code == 200
    assert first.json()["redemption_ref"] == "q-1"
    same = await env.client.post("/internal/v1/settlement-tokens/redeem", json=redeem, headers=svc)
    assert same.status_code == 200
    assert same.json()["redeemed_at"] == first.json()["redeemed_at"]
    other_ref = {**redeem, "redemption_ref": "q-2"}
    used = await env.client.post(
        "/internal/v1/settlement-tokens/redeem", json=other_ref, headers=svc
    )
    assert used.status_code == 409
    assert slug(used) == "settlement-token-used"
    # Only the settlement service may call these.
    resp = await env.client.post(
        "/internal/v1/settlement-tokens/resolve", json=base, headers=env.peers.hospital("hosp-1")
    )
    assert resp.status_code == 403
    ref = await env.client.get(
        f"/internal/v1/ecards/{card['ecard_id']}?client_id=app-a", headers=svc
    )
    assert ref.status_code == 200
    assert ref.json()["partner_client_id"] == "app-a"
    ref = await env.client.get(
        f"/internal/v1/ecards/{card['ecard_id']}?client_id=app-b", headers=svc
    )
    assert ref.status_code == 404


async def test_settlement_token_only_for_hospitals_and_payment_codes(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    await env.enable_payment(card["ecard_id"])
    pay = await qr(env, card["ecard_id"], "payment", pin="135790")
    resp = await env.client.post(
        "/v1/scans", json={"qr_token": pay, "purpose": "settlement"}, headers=env.peers.scanner()
    )
    assert resp.status_code == 201
    assert "settlement_token" not in resp.json()
    ident = await qr(env, card["ecard_id"])
    resp = await env.client.post(
        "/v1/scans", json={"qr_token": ident, "purpose": "settlement"}, headers=env.peers.hospital()
    )
    assert resp.status_code == 201
    assert "settlement_token" not in resp.json()


async def test_expired_settlement_token_is_invalid(tmp_path: Path) -> None:
    async with issuance_env(tmp_path, settlement_token_seconds=10) as env:
        card = await env.issue(env.peers.add_holder())
        await env.enable_payment(card["ecard_id"])
        token = await qr(env, card["ecard_id"], "payment", pin="135790")
        scan = await env.client.post(
            "/v1/scans",
            json={"qr_token": token, "purpose": "settlement"},
            headers=env.peers.hospital(),
        )
        st = scan.json()["settlement_token"]
        from sqlalchemy import text

        async with env.ctx.runtime.db.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE settlement_token SET expires_at = '2000-01-01 00:00:00.000000'")
            )
        body = {"settlement_token": st, "hospital_client_id": "hosp-1", "redemption_ref": "q"}
        svc = env.peers.settlement_service()
        for path in ("resolve", "redeem"):
            resp = await env.client.post(
                f"/internal/v1/settlement-tokens/{path}", json=body, headers=svc
            )
            assert resp.status_code == 404, path
