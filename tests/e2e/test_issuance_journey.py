"""The e-card journey through the gateway, real processes on PostgreSQL (issue 4).

Verify a holder (SMS outbox), issue e-cards in two apps, enable payment, get a payment QR,
scan it as a hospital for a settlement token; replay → 409; an expired code → 422; a
suspended e-card → 403; the physical card reported lost → every app's e-card stops; the card
replaced → the reissued e-cards work again. Clients come from identity's ``seed-demo``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from devkit.cluster import Cluster
from devkit.demo import issue_demo_ecards
from support.cluster import pg_cluster
from support.journey import Gateway, seed_demo

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

ENV = {
    "ISSUANCE_QR_LIFETIME_SECONDS": "4",
    "ISSUANCE_QR_REFRESH_MARGIN_SECONDS": "2",
    "ISSUANCE_QR_LEEWAY_SECONDS": "0",
    "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Cluster]:
    with pg_cluster(tmp_path_factory.mktemp("issuance-e2e"), run_id + "j", extra_env=ENV) as c:
        seed_demo(c)  # identity's demo clients and holders; settlement's policies too
        yield c


class Api(Gateway):
    def client(self, kind: str, index: int = 0) -> dict[str, Any]:
        return self.entry(kind, index)

    def assertion(
        self, holder: dict[str, Any], partner: dict[str, str], ops: dict[str, str]
    ) -> str:
        details = {k: holder[k] for k in ("name", "id_number", "card_number", "phone")}
        started = self.http.post("/v1/verifications", json=details, headers=partner)
        assert started.status_code == 201, started.text
        items = self.http.get(
            "/v1/admin/sms-outbox", params={"phone": holder["phone"]}, headers=ops
        ).json()["items"]
        code = sorted(items, key=lambda i: i["sent_at"])[-1]["code"]
        confirmed = self.http.post(
            f"/v1/verifications/{started.json()['verification_id']}/confirm",
            json={"code": code},
            headers=partner,
        )
        assert confirmed.status_code == 200, confirmed.text
        return str(confirmed.json()["identity_assertion"])

    def qr(self, ecard_id: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        resp = self.http.post(
            f"/v1/ecards/{ecard_id}/qrcodes", json={"purpose": "identity", **body}, headers=headers
        )
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def scan(
        self,
        token: str,
        headers: dict[str, str],
        purpose: str = "identity",
        key: str | None = None,
    ) -> httpx.Response:
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        return self.http.post(
            "/v1/scans", json={"qr_token": token, "purpose": purpose}, headers=headers
        )


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def slug(resp: httpx.Response) -> str:
    return str(resp.json()["type"]).rsplit("/", 1)[-1]


def test_the_ecard_journey(cluster: Cluster) -> None:
    api = Api(cluster)
    app_a, app_b = api.auth(api.client("partner_app", 0)), api.auth(api.client("partner_app", 1))
    ops = api.auth(api.client("ops"))
    hospital = api.auth(api.client("hospital"))
    holder = api.holders[-1]  # the demo-seed test below uses the first ones

    issued = api.http.post(
        "/v1/ecards",
        json={"identity_assertion": api.assertion(holder, app_a, ops)},
        headers=app_a,
    )
    assert issued.status_code == 201, issued.text
    card_a = issued.json()
    card_b = api.http.post(
        "/v1/ecards",
        json={"identity_assertion": api.assertion(holder, app_b, ops)},
        headers=app_b,
    ).json()
    assert card_a["holder"]["pairwise_id"] != card_b["holder"]["pairwise_id"]
    a = f"/v1/ecards/{card_a['ecard_id']}"
    assert api.http.get(a, headers=app_b).status_code == 404

    assert api.http.put(a + "/pin", json={"pin": "135790"}, headers=app_a).status_code == 204
    paid = api.http.post(a + "/payment", json={"pin": "135790"}, headers=app_a)
    assert paid.status_code == 200, paid.text
    assert paid.json()["sign_level"] == 2

    # A PIN inside the holder's own ID number is refused (identity answers the check).
    inside = holder["id_number"][6:12]
    weak = api.http.put(a + "/pin", json={"pin": inside, "old_pin": "135790"}, headers=app_a)
    assert weak.status_code == 422, weak.text

    code = api.qr(card_a["ecard_id"], app_a, purpose="payment", pin="135790")
    scan = api.scan(code["qr_token"], hospital, "settlement", key="scan-once")
    assert scan.status_code == 201, scan.text
    assert len(scan.json()["settlement_token"]) == 40
    assert scan.json()["sign_level"] == 2
    # The hospital lost the answer and retries with its Idempotency-Key: the same answer,
    # the same settlement token; the code itself stays used.
    retried = api.scan(code["qr_token"], hospital, "settlement", key="scan-once")
    assert retried.status_code == 201
    assert retried.headers["idempotency-replayed"] == "true"
    assert retried.json() == scan.json()
    replay = api.scan(code["qr_token"], hospital, "settlement")
    assert replay.status_code == 409
    assert slug(replay) == "qr-already-used"

    # Wait out a code's life (4 s here), then scan it.
    old = api.qr(card_a["ecard_id"], app_a)
    expires = datetime.fromisoformat(old["expires_at"]).timestamp()
    time.sleep(max(0.0, expires - time.time() + 1.1))
    expired = api.scan(old["qr_token"], hospital)
    assert expired.status_code == 422
    assert slug(expired) == "qr-expired"

    # The app suspends its e-card: a fresh code from before the suspension is refused.
    fresh = api.qr(card_a["ecard_id"], app_a)
    assert api.http.post(a + "/suspend", headers=app_a).json()["status"] == "suspended"
    refused = api.scan(fresh["qr_token"], hospital)
    assert refused.status_code == 403
    assert slug(refused) == "ecard-not-active"
    assert api.http.post(a + "/resume", headers=app_a).json()["status"] == "active"

    # The physical card is reported lost: every app's e-card of the holder stops.
    before_b = api.qr(card_b["ecard_id"], app_b)
    lost = api.http.post(
        f"/v1/admin/cards/{holder['card_number']}/status", json={"status": "lost"}, headers=ops
    )
    assert lost.status_code == 200, lost.text

    def status(path: str, headers: dict[str, str]) -> str:
        return str(api.http.get(path, headers=headers).json()["status"])

    b = f"/v1/ecards/{card_b['ecard_id']}"
    eventually(lambda: status(a, app_a) == "suspended" and status(b, app_b) == "suspended")
    stopped = api.scan(before_b["qr_token"], hospital)
    assert stopped.status_code == 403
    refused_qr = api.http.post(a + "/qrcodes", json={"purpose": "identity"}, headers=app_a)
    assert refused_qr.status_code == 403

    # The card is replaced: the e-cards are reissued (new sign number, same pairwise id).
    replaced = api.http.post(
        f"/v1/admin/cards/{holder['card_number']}/status",
        json={"status": "replaced", "new_card_number": "Z98765432"},
        headers=ops,
    )
    assert replaced.status_code == 200, replaced.text
    eventually(lambda: status(a, app_a) == "active" and status(b, app_b) == "active")
    again = api.http.get(a, headers=app_a).json()
    assert again["sign_seq"] == 2
    assert again["sign_no"] != card_a["sign_no"]
    assert again["holder"]["pairwise_id"] == card_a["holder"]["pairwise_id"]
    works = api.scan(api.qr(card_a["ecard_id"], app_a)["qr_token"], hospital)
    assert works.status_code == 201, works.text


def test_demo_seed_issues_ecards(cluster: Cluster) -> None:
    cards = issue_demo_ecards(cluster.url("gateway"), cluster.var_dir, count=2)
    assert len(cards) == 2
    assert all(c["ecard_id"].startswith("ec_") for c in cards)
    # Idempotent: the same holders in the same app get the same e-cards back.
    again = issue_demo_ecards(cluster.url("gateway"), cluster.var_dir, count=2)
    assert [c["ecard_id"] for c in again] == [c["ecard_id"] for c in cards]
