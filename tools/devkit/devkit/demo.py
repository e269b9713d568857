"""Demo e-cards for ``make run``: issued through the public API once the cluster is up.

``devkit.run`` calls :func:`seed_after_start`. As the first demo partner app it verifies a
few demo holders (``var/demo-holders.json``, written by identity's ``seed-demo``) by SMS
code, reading the code from the development SMS outbox as the ops client, and issues their
e-cards, then waits until settlement has opened their personal accounts from identity's
feed, so that once ``make run`` says it is running a demo holder can pay at once (the
README's quick start). Idempotent: a holder who has the app's e-card gets the same one
back. Writes ``var/demo-ecards.json``; never stops ``make run`` on a failure (it says
what went wrong).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from devkit.cluster import Cluster

HOLDERS = 3
ACCOUNTS_TIMEOUT = 30.0


def _token(client: httpx.Client, entry: dict[str, Any]) -> str:
    resp = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(entry["client_id"], entry["client_secret"]),
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def _first(clients: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(c for c in clients if c.get("kind") == kind and c.get("client_secret"))


def _sms_code(client: httpx.Client, ops: str, phone: str) -> str:
    resp = client.get(
        "/v1/admin/sms-outbox", params={"phone": phone}, headers={"Authorization": f"Bearer {ops}"}
    )
    resp.raise_for_status()
    items = sorted(resp.json()["items"], key=lambda i: i.get("sent_at", ""))
    return str(items[-1]["code"])


def issue_demo_ecards(base_url: str, var_dir: Path, count: int = HOLDERS) -> list[dict[str, Any]]:
    """Verify ``count`` demo holders and issue their e-cards in the first demo partner app."""
    clients = json.loads((var_dir / "demo-clients.json").read_text())
    holders = json.loads((var_dir / "demo-holders.json").read_text())
    app = _first(clients, "partner_app")
    out: list[dict[str, Any]] = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        partner = {"Authorization": f"Bearer {_token(client, app)}"}
        ops = _token(client, _first(clients, "ops"))
        for holder in holders[:count]:
            details = {k: holder[k] for k in ("name", "id_number", "card_number", "phone")}
            started = client.post("/v1/verifications", json=details, headers=partner)
            started.raise_for_status()
            verification_id = started.json()["verification_id"]
            code = _sms_code(client, ops, holder["phone"])
            confirmed = client.post(
                f"/v1/verifications/{verification_id}/confirm",
                json={"code": code},
                headers=partner,
            )
            confirmed.raise_for_status()
            issued = client.post(
                "/v1/ecards",
                json={"identity_assertion": confirmed.json()["identity_assertion"]},
                headers=partner,
            )
            issued.raise_for_status()
            card = issued.json()
            out.append(
                {
                    "ecard_id": card["ecard_id"],
                    "sign_no": card["sign_no"],
                    "name_masked": card["holder"]["name_masked"],
                    "region_code": card["region_code"],
                    "partner_client_id": app["client_id"],
                }
            )
    return out


def wait_for_accounts(
    base_url: str, var_dir: Path, cards: list[dict[str, Any]], timeout: float = ACCOUNTS_TIMEOUT
) -> bool:
    """Poll each demo e-card's account until settlement has opened it; False on timeout.

    The demo holders are among the first of identity's feed, so once theirs are open the
    other demo holders' (``var/demo-holders.json``) are too: settlement applies the feed
    in pages, in order.
    """
    clients = json.loads((var_dir / "demo-clients.json").read_text())
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=10) as client:
        partner = {"Authorization": f"Bearer {_token(client, _first(clients, 'partner_app'))}"}
        for card in cards:
            while True:
                resp = client.get(f"/v1/ecards/{card['ecard_id']}/account", headers=partner)
                if resp.status_code == 200 and resp.json().get("opened") is True:
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
    return True


def seed_after_start(cluster: Cluster) -> None:
    """Issue the demo e-cards and write ``var/demo-ecards.json`` (see the README, Issuance)."""
    var_dir = cluster.var_dir
    if not (var_dir / "demo-clients.json").exists() or not (var_dir / "demo-holders.json").exists():
        print("e-SSC: no demo clients or holders yet; demo e-cards skipped", flush=True)
        return
    try:
        cards = issue_demo_ecards(cluster.url("gateway"), var_dir)
    except (httpx.HTTPError, KeyError, StopIteration, ValueError) as exc:
        print(f"e-SSC: demo e-cards not issued ({type(exc).__name__}: {exc})", flush=True)
        return
    (var_dir / "demo-ecards.json").write_text(json.dumps(cards, ensure_ascii=False, indent=2))
    print(f"e-SSC: {len(cards)} demo e-cards in {var_dir}/demo-ecards.json", flush=True)
    try:
        opened = wait_for_accounts(cluster.url("gateway"), var_dir, cards)
    except (httpx.HTTPError, KeyError, StopIteration, ValueError) as exc:
        opened = False
        print(f"e-SSC: demo accounts not checked ({type(exc).__name__}: {exc})", flush=True)
    if not opened:
        print("e-SSC: settlement has not opened the demo holders' accounts yet", flush=True)
