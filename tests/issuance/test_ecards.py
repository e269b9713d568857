"""E-cards in process: issuing from assertions, pairwise ids, PIN rules, payment, lifecycle."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shared.tokens.claims import ECARD_CREDENTIAL
from shared.tokens.codec import verify_token
from support.issuance_env import ISSUER, IssuanceEnv

pytestmark = pytest.mark.asyncio


def problem_type(resp: object) -> str:
    return str(resp.json()["type"]).rsplit("/", 1)[-1]  # type: ignore[attr-defined]


async def test_issue_returns_the_contract_fields_and_a_verifiable_credential(
    env: IssuanceEnv,
) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder, "app-a")
    assert card["sign_level"] == 1
    assert card["status"] == "active"
    assert card["sign_seq"] == 1
    assert card["region_code"] == "370200"
    assert card["sign_no"].startswith("370200")
    assert card["holder"]["name_masked"] == "张**"
    assert card["holder"]["id_number_masked"] == "3604**********0071"
    ring = env.ctx.runtime.ring
    claims = verify_token(
        card["credential"],
        ECARD_CREDENTIAL,
        key_for_kid=ring.public_key,
        issuer=ISSUER,
        audience="app-a",
    )
    assert claims.sub == card["holder"]["pairwise_id"]
    assert claims.ecard_id == card["ecard_id"]
    assert claims.sign_level == 1


async def test_same_holder_same_app_gets_the_existing_ecard(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    first = await env.issue(holder, "app-a")
    resp = await env.client.post(
        "/v1/ecards",
        json={"identity_assertion": env.peers.assertion(holder, "app-a")},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 200
    assert resp.json()["ecard_id"] == first["ecard_id"]


async def test_pairwise_id_differs_between_apps(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    b = await env.issue(holder, "app-b")
    assert a["holder"]["pairwise_id"] != b["holder"]["pairwise_id"]
    assert a["ecard_id"] != b["ecard_id"]
    assert a["sign_no"] != b["sign_no"]


async def test_an_assertion_works_once(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    assertion = env.peers.assertion(holder, "app-a")
    headers = env.peers.partner("app-a")
    first = await env.client.post(
        "/v1/ecards", json={"identity_assertion": assertion}, headers=headers
    )
    assert first.status_code == 201
    again = await env.client.post(
        "/v1/ecards", json={"identity_assertion": assertion}, headers=headers
    )
    assert again.status_code == 422
    assert problem_type(again) == "assertion-used"


async def test_assertion_of_another_app_or_forged_is_refused(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    resp = await env.client.post(
        "/v1/ecards",
        json={"identity_assertion": env.peers.assertion(holder, "app-b")},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 422
    assert problem_type(resp) == "assertion-invalid"
    assert resp.json()["errors"][0]["field"] == "identity_assertion"
    token = env.peers.assertion(holder, "app-a")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    resp = await env.client.post(
        "/v1/ecards", json={"identity_assertion": forged}, headers=env.peers.partner("app-a")
    )
    assert resp.status_code == 422
    assert problem_type(resp) == "assertion-invalid"


async def test_physical_card_not_active_is_409(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    holder.card_status = "lost"
    resp = await env.client.post(
        "/v1/ecards",
        json={"identity_assertion": env.peers.assertion(holder, "app-a")},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 409
    assert problem_type(resp) == "card-not-active"


async def test_wrong_kind_or_scope_is_403_and_no_token_401(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    body = {"identity_assertion": env.peers.assertion(holder, "app-a")}
    assert (await env.client.post("/v1/ecards", json=body)).status_code == 401
    resp = await env.client.post("/v1/ecards", json=body, headers=env.peers.hospital())
    assert resp.status_code == 403
    resp = await env.client.post(
        "/v1/ecards", json=body, headers=env.peers.partner("app-a", "ecard:qr")
    )
    assert resp.status_code == 403


async def test_unknown_fields_are_refused_naming_the_field(env: IssuanceEnv) -> None:
    resp = await env.client.post(
        "/v1/ecards",
        json={"identity_assertion": "x", "status": "active"},
        headers=env.peers.partner("app-a"),
    )
    assert resp.status_code == 422
    assert {"field": "status", "message": "Unknown field."} in resp.json()["errors"]


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ("123456", "run"),
        ("987654", "run"),
        ("777777", "repeated"),
        ("199101", "ID number"),
    ],
)
async def test_pin_rules(env: IssuanceEnv, pin: str, message: str) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder)
    resp = await env.client.put(
        f"/v1/ecards/{card['ecard_id']}/pin", json={"pin": pin}, headers=env.peers.partner("app-a")
    )
    assert resp.status_code == 422
    assert message in resp.json()["detail"]
    assert resp.json()["errors"][0]["field"] == "pin"


async def test_pin_must_be_six_digits(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder)
    for bad in ("12345", "1234567", "12a456", 123456):
        resp = await env.client.put(
            f"/v1/ecards/{card['ecard_id']}/pin",
            json={"pin": bad},
            headers=env.peers.partner("app-a"),
        )
        assert resp.status_code == 422, bad
        assert resp.json()["errors"][0]["field"] == "pin"


async def test_payment_needs_the_pin_and_five_wrong_pins_lock(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder)
    path = f"/v1/ecards/{card['ecard_id']}"
    headers = env.peers.partner("app-a")
    resp = await env.client.post(path + "/payment", json={"pin": "135790"}, headers=headers)
    assert resp.status_code == 409
    assert problem_type(resp) == "pin-not-set"
    assert (
        await env.client.put(path + "/pin", json={"pin": "135790"}, headers=headers)
    ).status_code == 204
    for attempt in range(1, 5):
        resp = await env.client.post(path + "/payment", json={"pin": "246801"}, headers=headers)
        assert resp.status_code == 422
        assert problem_type(resp) == "pin-incorrect"
        assert resp.json()["attempts_left"] == 5 - attempt
    resp = await env.client.post(path + "/payment", json={"pin": "246801"}, headers=headers)
    assert resp.status_code == 423
    # Locked: even the right PIN is refused now.
    resp = await env.client.post(path + "/payment", json={"pin": "135790"}, headers=headers)
    assert resp.status_code == 423
    assert (await env.client.get(path, headers=headers)).json()["payment_locked"] is True
    # A fresh identity assertion resets the PIN and lifts the lock.
    resp = await env.client.put(
        path + "/pin",
        json={"pin": "864209", "identity_assertion": env.peers.assertion(holder, "app-a")},
        headers=headers,
    )
    assert resp.status_code == 204
    resp = await env.client.post(path + "/payment", json={"pin": "864209"}, headers=headers)
    assert resp.status_code == 200
    assert resp.json()["sign_level"] == 2
    assert resp.json()["payment_locked"] is False


async def test_changing_a_pin_needs_the_old_one(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    card = await env.issue(holder)
    path = f"/v1/ecards/{card['ecard_id']}/pin"
    headers = env.peers.partner("app-a")
    assert (await env.client.put(path, json={"pin": "135790"}, headers=headers)).status_code == 204
    resp = await env.client.put(path, json={"pin": "246801"}, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "old_pin"
    resp = await env.client.put(path, json={"pin": "246801", "old_pin": "000001"}, headers=headers)
    assert resp.status_code == 422
    assert problem_type(resp) == "pin-incorrect"
    resp = await env.client.put(path, json={"pin": "246801", "old_pin": "135790"}, headers=headers)
    assert resp.status_code == 204


async def test_app_suspend_resume_and_unlink(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder()
    a = await env.issue(holder, "app-a")
    b = await env.issue(holder, "app-b")
    ha, hb = env.peers.partner("app-a"), env.peers.partner("app-b")
    path = f"/v1/ecards/{a['ecard_id']}"
    resp = await env.client.post(path + "/suspend", headers=ha)
    assert resp.status_code == 200
    assert resp.json()["status"] == "suspended"
    resp = await env.client.post(path + "/resume", headers=ha)
    assert resp.status_code == 200
    assert resp.json()["status"] == "active"
    assert (await env.client.delete(path, headers=ha)).status_code == 204
    assert (await env.client.get(path, headers=ha)).status_code == 404
    other = await env.client.get(f"/v1/ecards/{b['ecard_id']}", headers=hb)
    assert other.status_code == 200
    assert other.json()["status"] == "active"
    # After unlinking, the app may issue a new e-card for the holder (same pairwise id).
    again = await env.issue(holder, "app-a")
    assert again["ecard_id"] != a["ecard_id"]
    assert again["holder"]["pairwise_id"] == a["holder"]["pairwise_id"]


async def test_personal_data_is_encrypted_at_rest(env: IssuanceEnv) -> None:
    holder = env.peers.add_holder(name="欧阳娜娜")
    await env.issue(holder)
    db_file = env.settings.database_url.split("///", 1)[1]
    raw = b"".join(
        bytes(str(row), "utf-8")
        for row in sqlite3.connect(db_file).execute("SELECT * FROM ecard").fetchall()
    )
    raw += await asyncio.to_thread(Path(db_file).read_bytes)
    assert "欧**".encode() not in raw
    assert "欧阳".encode() not in raw
    assert b"3604**********0071" not in raw
    assert b"1991-01-01" not in raw
