"""The e-card web page in process: the link, the card face, QR refresh, expiry, headers."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import text

from support.issuance_env import ISSUER, IssuanceEnv, issuance_env

pytestmark = pytest.mark.asyncio


async def link(env: IssuanceEnv, ecard_id: str) -> str:
    resp = await env.client.post(
        f"/v1/ecards/{ecard_id}/h5-sessions", headers=env.peers.partner("app-a")
    )
    assert resp.status_code == 201
    url: str = resp.json()["url"]
    assert url.startswith(ISSUER + "/h5/ecard/")
    return url.removeprefix(ISSUER)


async def test_page_data_and_qr(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder)
    env.peers.summaries[holder.holder_ref] = {
        "holder_ref": holder.holder_ref,
        "year": 2026,
        "balance_fen": 123456,
        "deductible_used_fen": 0,
        "fund_paid_fen": 100,
        "cap_remaining_fen": 5_000_000,
        "recent": [
            {
                "settlement_id": "st_1",
                "settled_at": "2026-11-01T08:00:00Z",
                "hospital_name": "青岛市立医院",
                "total_fen": 20000,
                "fund_pay_fen": 15000,
                "account_pay_fen": 5000,
                "cash_pay_fen": 0,
                "refunded": False,
            }
        ],
    }
    path = await link(env, card["ecard_id"])
    page = await env.client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Bearer" not in page.text
    assert "eyJ" not in page.text
    data = (await env.client.get(path + "/data")).json()
    assert data["name_masked"] == "张**"
    assert data["region_code"] == "370200"
    assert data["account"]["balance"] == "1234.56"
    assert data["recent"][0]["hospital_name"] == "青岛市立医院"
    qr = await env.client.post(path + "/qrcode")
    assert qr.status_code == 200
    decoded = zxingcpp.read_barcode(Image.open(io.BytesIO(base64.b64decode(qr.json()["image"]))))
    assert decoded is not None
    assert decoded.text == qr.json()["qr_token"]
    js = await env.client.get("/h5/static/ecard.js")
    assert js.status_code == 200
    assert "text/javascript" in js.headers["content-type"]
    assert (await env.client.get("/h5/static/../main.py")).status_code == 404
    assert (await env.client.get("/h5/static/other.js")).status_code == 404


async def test_without_settlement_the_account_is_omitted(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    data = (await env.client.get(await link(env, card["ecard_id"]) + "/data")).json()
    assert "account" not in data
    assert data["status"] == "active"


async def test_expired_or_unknown_link(tmp_path: Path) -> None:
    async with issuance_env(tmp_path) as env:
        card = await env.issue(env.peers.add_holder())
        path = await link(env, card["ecard_id"])
        async with env.ctx.runtime.db.sessionmaker() as session, session.begin():
            await session.execute(
                text("UPDATE h5_session SET expires_at = '2000-01-01 00:00:00.000000'")
            )
        page = await env.client.get(path)
        assert page.status_code == 410
        assert "过期" in page.text
        data = await env.client.get(path + "/data")
        assert data.status_code == 410
        assert data.json()["type"].endswith("session-expired")
        assert (await env.client.post(path + "/qrcode")).status_code == 410
        unknown = await env.client.get("/h5/ecard/" + "A" * 43 + "/data")
        assert unknown.status_code == 410


async def test_unlinked_ecard_link_stops_working(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    path = await link(env, card["ecard_id"])
    await env.client.delete(f"/v1/ecards/{card['ecard_id']}", headers=env.peers.partner("app-a"))
    assert (await env.client.get(path + "/data")).status_code == 410
