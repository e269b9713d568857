"""Object-level authorization: app B gets 404 on every e-card route for app A's e-card."""

from __future__ import annotations

import pytest

from support.issuance_env import IssuanceEnv

pytestmark = pytest.mark.asyncio

ROUTES = [
    ("GET", "", None),
    ("PUT", "/pin", {"pin": "135790"}),
    ("POST", "/payment", {"pin": "135790"}),
    ("POST", "/suspend", None),
    ("POST", "/resume", None),
    ("POST", "/qrcodes", {"purpose": "identity"}),
    ("POST", "/qrcodes?format=png", {"purpose": "identity"}),
    ("GET", "/qrcode.png?purpose=identity", None),
    ("POST", "/h5-sessions", None),
    ("DELETE", "", None),
]


async def test_every_ecard_route_is_404_for_another_app(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder, "app-a")
    base = f"/v1/ecards/{card['ecard_id']}"
    intruder = env.peers.partner("app-b")
    for method, suffix, body in ROUTES:
        resp = await env.client.request(method, base + suffix, json=body, headers=intruder)
        assert resp.status_code == 404, (method, suffix, resp.status_code)
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("ecard-not-found")
    # Nothing happened to app A's e-card.
    owner = env.peers.partner("app-a")
    resp = await env.client.get(base, headers=owner)
    assert resp.status_code == 200
    assert resp.json()["status"] == "active"
    assert resp.json()["pin_set"] is False
    # And the owner can use every route (the matrix is not vacuous).
    for method, suffix, body in ROUTES:
        if suffix == "/payment":
            continue
        resp = await env.client.request(method, base + suffix, json=body, headers=owner)
        assert resp.status_code in (200, 201, 204), (method, suffix, resp.text)
