"""QR codes in process: tokens, images decoded by zxing-cpp, the worst-case version, limits."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import cairosvg
import pytest
import segno
import zxingcpp
from PIL import Image

from issuance.qrcodes import render
from shared.tokens.qr import QR_TOKEN_LENGTH, QrPurpose, issue_qr_token, verify_qr_signature_offline
from support.issuance_env import IssuanceEnv, issuance_env

pytestmark = pytest.mark.asyncio


def decode_png(data: bytes) -> str:
    result = zxingcpp.read_barcode(Image.open(io.BytesIO(data)))
    assert result is not None
    assert result.valid
    assert result.format == zxingcpp.BarcodeFormat.QRCode
    return str(result.text)


def decode_svg(svg: str) -> str:
    return decode_png(cairosvg.svg2png(bytestring=svg.encode()))


async def test_token_only_qr(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    resp = await env.client.post(
        f"/v1/ecards/{card['ecard_id']}/qrcodes",
        json={"purpose": "identity"},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 201
    body = resp.json()
    assert "image" not in body
    assert len(body["qr_token"]) == QR_TOKEN_LENGTH
    assert body["lifetime_seconds"] == 60
    assert 0 < body["refresh_in_seconds"] < 60
    assert body["refresh_at"] < body["expires_at"]
    # An offline verifier with only the public JWKS accepts it and learns nothing else.
    jwks = (await env.client.get("/.well-known/jwks.json")).json()
    assert verify_qr_signature_offline(body["qr_token"], jwks, now=int(time.time()))
    assert "张" not in base64.urlsafe_b64decode(body["qr_token"].split(".")[1] + "==").decode(
        "latin-1"
    )


async def test_png_and_svg_decode_to_the_exact_token(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    path = f"/v1/ecards/{card['ecard_id']}/qrcodes"
    headers = env.peers.partner("app-a")
    png = await env.client.post(path + "?format=png", json={"purpose": "identity"}, headers=headers)
    assert png.status_code == 201
    body = png.json()
    assert body["image_type"] == "image/png"
    assert decode_png(base64.b64decode(body["image"])) == body["qr_token"]
    svg = await env.client.post(path + "?format=svg", json={"purpose": "identity"}, headers=headers)
    body = svg.json()
    assert body["image"].startswith("<svg")
    assert decode_svg(body["image"]) == body["qr_token"]
    direct = await env.client.get(
        f"/v1/ecards/{card['ecard_id']}/qrcode.png?purpose=identity", headers=headers
    )
    assert direct.status_code == 200
    assert direct.headers["content-type"] == "image/png"
    assert direct.headers["cache-control"] == "no-store"
    assert len(decode_png(direct.content)) == QR_TOKEN_LENGTH
    bad = await env.client.get(
        f"/v1/ecards/{card['ecard_id']}/qrcode.png?purpose=payment", headers=headers
    )
    assert bad.status_code == 422


async def test_worst_case_token_is_qr_version_9_and_decodes(env: IssuanceEnv) -> None:
    key = env.ctx.runtime.ring.signing_key("qr")
    token, _ = issue_qr_token(
        key,
        purpose=QrPurpose.PAYMENT,
        ecard_seq=2**64 - 1,
        iat=2**32 - 61,
        lifetime=60,
        rand=b"\xff" * 8,
    )
    assert len(token) == QR_TOKEN_LENGTH
    symbol = render.encode(token)
    assert symbol.version == 9
    assert symbol.error == "M"
    assert segno.make(token, error="m", boost_error=False).version <= 9
    assert decode_png(render.png_bytes(token)) == token
    assert decode_svg(render.svg_text(token)) == token


async def test_many_random_codes_decode(env: IssuanceEnv) -> None:
    key = env.ctx.runtime.ring.signing_key("qr")
    for seq in range(25):
        token, _ = issue_qr_token(
            key, purpose=QrPurpose.IDENTITY, ecard_seq=seq, iat=int(time.time())
        )
        assert decode_png(render.png_bytes(token)) == token


async def test_payment_code_needs_level_2_and_the_pin(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    path = f"/v1/ecards/{card['ecard_id']}/qrcodes"
    headers = env.peers.partner("app-a")
    resp = await env.client.post(
        path, json={"purpose": "payment", "pin": "135790"}, headers=headers
    )
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("payment-not-enabled")
    await env.enable_payment(card["ecard_id"])
    resp = await env.client.post(path, json={"purpose": "payment"}, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("pin-required")
    resp = await env.client.post(
        path, json={"purpose": "payment", "pin": "000001"}, headers=headers
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("pin-incorrect")
    resp = await env.client.post(
        path, json={"purpose": "payment", "pin": "135790"}, headers=headers
    )
    assert resp.status_code == 201
    assert resp.json()["purpose"] == "payment"


async def test_suspended_ecard_gets_no_code(env: IssuanceEnv) -> None:
    card = await env.issue(env.peers.add_holder())
    headers = env.peers.partner("app-a")
    await env.client.post(f"/v1/ecards/{card['ecard_id']}/suspend", headers=headers)
    resp = await env.client.post(
        f"/v1/ecards/{card['ecard_id']}/qrcodes", json={"purpose": "identity"}, headers=headers
    )
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("ecard-not-active")


async def test_rate_limit_per_ecard(tmp_path: Path) -> None:
    async with issuance_env(tmp_path, qr_rate_limit="3/minute") as env:
        holder = env.peers.add_holder()
        one = await env.issue(holder, "app-a")
        two = await env.issue(holder, "app-b")
        path = f"/v1/ecards/{one['ecard_id']}/qrcodes"
        headers = env.peers.partner("app-a")
        for _ in range(3):
            ok = await env.client.post(path, json={"purpose": "identity"}, headers=headers)
            assert ok.status_code == 201
        limited = await env.client.post(path, json={"purpose": "identity"}, headers=headers)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # Another e-card has its own budget.
        other = await env.client.post(
            f"/v1/ecards/{two['ecard_id']}/qrcodes",
            json={"purpose": "identity"},
            headers=env.peers.partner("app-b"),
        )
        assert other.status_code == 201
