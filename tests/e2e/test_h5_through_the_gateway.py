"""The e-card web page through the gateway, in Debian's Chromium, on the real cluster.

`tests/issuance/test_h5_browser.py` watches the QR renew (issuance alone, short lifetimes);
this one loads what a holder really gets: the link a partner app asked for, opened on the
gateway's public address, the page's data and QR fetched through the gateway from issuance,
and the account and recent settlement that issuance reads from settlement. The QR the page
shows must be a live code: a scanner redeems it through the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import zxingcpp
from PIL import Image

from support.journey import BILL, Gateway, eventually, fen
from support.otlp import TracedCluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
HOLDER = 3  # demo holders 0-2 belong to the journey, the metrics scrape and the trace


async def _qr_src(page: Any, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        src = await page.get_attribute("#qr", "src")
        if src and src.startswith("data:image/png"):
            return str(src)
        assert time.monotonic() < deadline, "no QR image on the page"
        await asyncio.sleep(0.05)


async def _text(page: Any, selector: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = (await page.text_content(selector) or "").strip()
        if text and text not in ("…", "-", "—"):  # placeholders until the data has loaded
            return text
        assert time.monotonic() < deadline, f"{selector} stayed empty"
        await asyncio.sleep(0.05)


async def _load(url: str, shot: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            response = await page.goto(url)
            assert response is not None
            src = await _qr_src(page)
            seen = {
                "status": response.status,
                "csp": response.headers.get("content-security-policy", ""),
                "src": src,
                "name": await _text(page, "#name"),
                "balance": await _text(page, "#balance"),
                "recent": await _text(page, "#recent"),
                "errors": errors,
                "html": await page.content(),
            }
            await page.screenshot(path=str(shot))
            return seen
        finally:
            await browser.close()


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
def test_the_page_a_holder_opens_works_through_the_gateway(
    observed: TracedCluster, output_dir: Path
) -> None:
    cluster = observed.cluster
    gw = Gateway(cluster)
    app = gw.auth(gw.entry("partner_app", 0))
    ops = gw.auth(gw.entry("ops"))
    hospital = gw.auth(gw.entry("hospital", 0))
    ecard = gw.ecard_with_payment(gw.holders[HOLDER], app, ops)
    account = f"/v1/ecards/{ecard}/account"
    eventually(lambda: gw.http.get(account, headers=app).json().get("opened") is True)
    # One settlement, so that the page has something recent to show.
    token = gw.settlement_token(ecard, app, hospital)
    quote = gw.http.post(
        "/v1/settlements/quotes",
        json={"settlement_token": token, "visit": {"type": "outpatient"}, "items": BILL},
        headers=hospital,
    )
    assert quote.status_code == 201, quote.text
    settled = gw.http.post(
        "/v1/settlements",
        json={"quote_id": quote.json()["quote_id"]},
        headers={**hospital, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert settled.status_code == 201, settled.text
    balance = gw.http.get(account, headers=app).json()["balance"]

    session = gw.http.post(f"/v1/ecards/{ecard}/h5-sessions", headers=app)
    assert session.status_code == 201, session.text
    link = session.json()["url"]
    assert "access_token" not in link
    assert app["Authorization"].split()[1] not in link
    parts = urlsplit(link)
    url = cluster.url("gateway") + parts.path + (f"?{parts.query}" if parts.query else "")

    seen = asyncio.run(_load(url, output_dir / "h5-through-the-gateway.png"))
    assert seen["status"] == 200
    assert "script-src" in seen["csp"]
    assert seen["errors"] == []
    assert app["Authorization"].split()[1] not in seen["html"]
    assert "*" in seen["name"]  # masked
    assert gw.holders[HOLDER]["name"] not in seen["html"]
    assert gw.holders[HOLDER]["id_number"] not in seen["html"]
    assert fen(seen["balance"]) == fen(balance)
    assert settled.json()["totals"]["total"] in seen["recent"]  # the settlement just made

    # The code on the page is a live one: the scanner redeems it through the gateway, once.
    picture = Image.open(io.BytesIO(base64.b64decode(seen["src"].split(",", 1)[1])))
    decoded = zxingcpp.read_barcode(picture)
    assert decoded is not None
    assert decoded.valid
    scanner = gw.auth(gw.entry("scanner"))
    scan = {"qr_token": decoded.text, "purpose": "identity"}
    first = gw.http.post("/v1/scans", json=scan, headers=scanner)
    assert first.status_code == 201, first.text
    assert first.json()["holder"]["name_masked"] == seen["name"]
    again = gw.http.post("/v1/scans", json=scan, headers=scanner)
    assert again.status_code == 409
