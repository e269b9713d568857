"""The hospital journey's steps through the gateway, as a partner app and a hospital make them.

Shared by the end-to-end tests (settlement journey, metrics scrape, trace): real OAuth
tokens of identity's ``seed-demo`` clients, an e-card with payment enabled through the
SMS verification, a payment QR scanned for a settlement token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from devkit.cluster import Cluster

# Fast event feeds, so that accounts open from identity's feed within a second.
ENV = {
    "SETTLEMENT_EVENT_POLL_SECONDS": "0.2",
    "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.5",
    "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
}
PIN = "135790"
BILL = [
    {"code": "A1", "name": "ward day", "category": "A", "quantity": "2", "unit_price": "300.00"},
    {"code": "B1", "name": "antibiotic", "category": "B", "quantity": "3", "unit_price": "45.50"},
    {"code": "C1", "name": "single room", "category": "C", "quantity": "1", "unit_price": "80.00"},
]


def seed_demo(cluster: Cluster, holders: int = 5) -> None:
    """Seed identity's demo clients and holders (files in var dir) and settlement's policies."""
    var = cluster.var_dir
    cluster.run_cli(
        "identity",
        "seed-demo",
        "--out",
        str(var / "demo-clients.json"),
        "--holders-out",
        str(var / "demo-holders.json"),
        "--holders",
        str(holders),
    )
    cluster.run_cli("settlement", "seed-demo")


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def fen(text: str) -> int:
    whole, _, frac = text.partition(".")
    return (-1 if whole.startswith("-") else 1) * (abs(int(whole)) * 100 + int(frac))


def ecard_with_payment(
    http: httpx.Client, holder: dict[str, Any], app: dict[str, str], ops: dict[str, str]
) -> str:
    """Verify ``holder`` by SMS (the code read from the dev SMS outbox), issue an e-card to
    the app, set the PIN and enable payment; returns the e-card id."""
    details = {k: holder[k] for k in ("name", "id_number", "card_number", "phone")}
    started = http.post("/v1/verifications", json=details, headers=app)
    assert started.status_code == 201, started.text
    items = http.get("/v1/admin/sms-outbox", params={"phone": holder["phone"]}, headers=ops).json()[
        "items"
    ]
    code = sorted(items, key=lambda i: i["sent_at"])[-1]["code"]
    confirmed = http.post(
        f"/v1/verifications/{started.json()['verification_id']}/confirm",
        json={"code": code},
        headers=app,
    )
    assert confirmed.status_code == 200, confirmed.text
    issued = http.post(
        "/v1/ecards",
        json={"identity_assertion": confirmed.json()["identity_assertion"]},
        headers=app,
    )
    assert issued.status_code in (200, 201), issued.text
    ecard = str(issued.json()["ecard_id"])
    path = f"/v1/ecards/{ecard}"
    assert http.put(path + "/pin", json={"pin": PIN}, headers=app).status_code == 204
    paid = http.post(path + "/payment", json={"pin": PIN}, headers=app)
    assert paid.status_code == 200, paid.text
    return ecard


class Gateway:
    """An HTTP client of the cluster's gateway, with the demo clients and holders."""

    def __init__(self, cluster: Cluster) -> None:
        self.http = httpx.Client(base_url=cluster.url("gateway"), timeout=15)
        self.clients: list[dict[str, Any]] = json.loads(
            (cluster.var_dir / "demo-clients.json").read_text()
        )
        self.holders: list[dict[str, Any]] = json.loads(
            (cluster.var_dir / "demo-holders.json").read_text()
        )

    def entry(self, kind: str, index: int = 0) -> dict[str, Any]:
        return [c for c in self.clients if c["kind"] == kind and c.get("client_secret")][index]

    def auth(self, entry: dict[str, Any]) -> dict[str, str]:
        """A bearer header from ``POST /oauth/token`` (client credentials, Basic)."""
        resp = self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(entry["client_id"], entry["client_secret"]),
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": "Bearer " + resp.json()["access_token"]}

    def ecard_with_payment(
        self, holder: dict[str, Any], app: dict[str, str], ops: dict[str, str]
    ) -> str:
        return ecard_with_payment(self.http, holder, app, ops)

    def payment_qr(self, ecard: str, app: dict[str, str]) -> str:
        qr = self.http.post(
            f"/v1/ecards/{ecard}/qrcodes", json={"purpose": "payment", "pin": PIN}, headers=app
        )
        assert qr.status_code == 201, qr.text
        return str(qr.json()["qr_token"])

    def settlement_token(self, ecard: str, app: dict[str, str], hospital: dict[str, str]) -> str:
        scan = self.http.post(
            "/v1/scans",
            json={"qr_token": self.payment_qr(ecard, app), "purpose": "settlement"},
            headers=hospital,
        )
        assert scan.status_code == 201, scan.text
        return str(scan.json()["settlement_token"])
