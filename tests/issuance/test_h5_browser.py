"""The e-card web page in a real headless Chromium (Debian's, driven by Playwright).

Issuance runs in this process under uvicorn on a loopback port (fake peers behind it), so
the browser loads exactly what the gateway forwards: the HTML, the static assets, the data
and the QR refreshes. A short QR lifetime makes the refresh happen within seconds.
"""

from __future__ import annotations

import asyncio
import base64
import io
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import zxingcpp
from PIL import Image

from devkit.cluster import free_port
from support.issuance_env import ISSUER, issuance_env

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"


def decode_data_url(src: str) -> str:
    data = base64.b64decode(src.split(",", 1)[1])
    result = zxingcpp.read_barcode(Image.open(io.BytesIO(data)))
    assert result is not None
    assert result.valid
    return str(result.text)


async def wait_for_src(page: Any, old: str | None, timeout: float = 10.0) -> str:
    """Poll the QR image's src until it is a PNG other than ``old``.

    Polled from here (CDP attribute reads): the page's strict CSP forbids the eval that
    Playwright's wait_for_function relies on, which is the point of the CSP.
    """
    deadline = time.monotonic() + timeout
    while True:
        src = await page.get_attribute("#qr", "src")
        if src and src.startswith("data:image/png") and src != old:
            return str(src)
        assert time.monotonic() < deadline, "the QR image did not change in time"
        await asyncio.sleep(0.05)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
async def test_page_shows_a_qr_that_renews_before_it_expires(
    tmp_path: Path, output_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    async with issuance_env(tmp_path, qr_lifetime_seconds=4, qr_refresh_margin_seconds=2) as env:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                env.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        serving = asyncio.create_task(server.serve())
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            card = await env.issue(env.peers.add_holder())
            resp = await env.client.post(
                f"/v1/ecards/{card['ecard_id']}/h5-sessions", headers=env.peers.partner("app-a")
            )
            url = resp.json()["url"].replace(ISSUER, f"http://127.0.0.1:{port}")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--headless", "--no-sandbox", "--disable-gpu"],
                )
                try:
                    page = await browser.new_page(viewport={"width": 390, "height": 844})
                    errors: list[str] = []
                    page.on(
                        "console", lambda m: errors.append(m.text) if m.type == "error" else None
                    )
                    await page.goto(url)
                    first = await wait_for_src(page, None)
                    expires = await page.get_attribute("#qr", "data-expires-at")
                    assert first is not None
                    assert expires is not None
                    token = decode_data_url(first)
                    assert len(token) == 175
                    assert await page.text_content("#name") == "张**"
                    countdown = await page.text_content("#countdown")
                    assert countdown is not None
                    assert countdown.isdigit()
                    await page.screenshot(path=str(output_dir / "issuance-h5-ecard.png"))
                    await page.wait_for_function(
                        "(old) => document.getElementById('qr').src !== old",
                        arg=first,
                        timeout=8000,
                    )
                    renewed_at = time.time()
                    second = await page.get_attribute("#qr", "src")
                    assert second is not None
                    assert decode_data_url(second) != token
                    assert renewed_at < datetime.fromisoformat(expires).timestamp()
                    assert errors == []
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            await serving
