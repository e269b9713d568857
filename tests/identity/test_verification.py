"""Real-name verification: indistinguishable mismatches, the OTP flow, lockout, expiry, face."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest
from jwt import PyJWK
from sqlalchemy import text

from identity.loader.synth import make_card_number
from shared.tokens.claims import IDENTITY_ASSERTION
from shared.tokens.codec import verify_token
from support.identity import ISSUER, ClientKey, Harness, fresh_rows

pytestmark = pytest.mark.asyncio

UNKNOWN_ID = "110209195607028154"  # valid, never imported (synthetic seeds differ)
REQUEST_SPECIFIC = ("request_id", "instance")


def _details(row: dict[str, Any]) -> dict[str, str]:
    return {k: row[k] for k in ("name", "id_number", "card_number", "phone")}


async def _holder(h: Harness) -> dict[str, str]:
    rows = fresh_rows(1)
    await h.import_rows(rows)
    return _details(rows[0])


async def _start(h: Harness, body: dict[str, Any], partner: str = "app_test") -> httpx.Response:
    return await h.http.post("/v1/verifications", json=body, headers=h.partner(partner))


async def _code(h: Harness, phone: str) -> str:
    resp = await h.http.get("/v1/admin/sms-outbox", params={"phone": phone}, headers=h.ops())
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert items, "no SMS was written"
    assert items[0]["phone"] == phone[:3] + "****" + phone[-4:]
    assert items[0]["code"] in items[0]["text"]
    code: str = items[0]["code"]
    return code


def _stable(resp: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()
    return {k: v for k, v in body.items() if k not in REQUEST_SPECIFIC}


async def test_mismatch_answers_are_identical_whichever_field_is_wrong(harness: Harness) -> None:
    good = await _holder(harness)
    other = await _holder(harness)
    variants = {
        "name": {**good, "name": other["name"] if other["name"] != good["name"] else "王小明"},
        "id_number": {**good, "id_number": other["id_number"]},
        "card_number": {**good, "card_number": make_card_number(random.Random())},
        "phone": {**good, "phone": other["phone"]},
        "unknown holder": {**good, "id_number": UNKNOWN_ID},
    }
    answers = {}
    for case, body in variants.items():
        resp = await _start(harness, body)
        assert resp.status_code == 422, (case, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
        answers[case] = (resp.status_code, _stable(resp), sorted(resp.headers.keys()))
    first = next(iter(answers.values()))
    assert all(answer == first for answer in answers.values()), answers
    assert first[1]["type"].endswith("/verification-failed")
    assert "errors" not in first[1]


async def test_inactive_card_is_the_same_mismatch(harness: Harness) -> None:
    good = await _holder(harness)
    lost = await harness.http.post(
        f"/v1/admin/cards/{good['card_number']}/status",
        json={"status": "lost"},
        headers=harness.ops(),
    )
    assert lost.status_code == 200
    resp = await _start(harness, good)
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/verification-failed")


async def test_otp_flow_end_to_end(harness: Harness) -> None:
    details = await _holder(harness)
    started = await _start(harness, details, partner="app_flow")
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["status"] == "pending"
    assert body["method"] == "sms_otp"
    assert "identity_assertion" not in body
    code = await _code(harness, details["phone"])
    vid = body["verification_id"]
    other_app = await harness.http.post(
        f"/v1/verifications/{vid}/confirm",
        json={"code": code},
        headers=harness.partner("app_other"),
    )
    assert other_app.status_code == 404
    done = await harness.http.post(
        f"/v1/verifications/{vid}/confirm", json={"code": code}, headers=harness.partner("app_flow")
    )
    assert done.status_code == 200, done.text
    assertion = done.json()["identity_assertion"]
    assert done.json()["status"] == "verified"
    jwks = (await harness.http.get("/.well-known/jwks.json")).json()
    keys = {k["kid"]: PyJWK(k).key for k in jwks["keys"]}
    claims = verify_token(
        assertion,
        IDENTITY_ASSERTION,
        key_for_kid=keys.get,
        issuer=ISSUER,
        audience="urn:essc:issuance",
    )
    assert claims.azp == "app_flow"
    assert claims.method == "sms_otp"
    assert claims.exp - claims.iat <= 300
    assert details["id_number"] not in assertion
    assert claims.sub.startswith("h")
    profile = await harness.http.get(
        f"/internal/v1/holders/{claims.sub}", headers=harness.service("issuance")
    )
    assert profile.status_code == 200
    assert (
        profile.json()["id_number_masked"]
        == details["id_number"][:4] + "*" * 10 + details["id_number"][-4:]
    )
    assert profile.json()["card_status"] == "active"
    pin_in = details["id_number"][6:12]
    checks = [
        await harness.http.post(
            f"/internal/v1/holders/{claims.sub}/pin-check",
            json={"pin": pin},
            headers=harness.service("issuance"),
        )
        for pin in (pin_in, "000000" if "000000" not in details["id_number"] else "999999")
    ]
    assert [c.json() for c in checks] == [{"contained": True}, {"contained": False}]
    again = await harness.http.post(
        f"/v1/verifications/{vid}/confirm", json={"code": code}, headers=harness.partner("app_flow")
    )
    assert again.status_code == 409


async def test_five_wrong_codes_lock_the_verification(harness: Harness) -> None:
    details = await _holder(harness)
    vid = (await _start(harness, details)).json()["verification_id"]
    code = await _code(harness, details["phone"])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    statuses = []
    for _ in range(5):
        resp = await harness.http.post(
            f"/v1/verifications/{vid}/confirm", json={"code": wrong}, headers=harness.partner()
        )
        statuses.append(resp.status_code)
        if resp.status_code == 422:
            assert resp.json()["errors"] == [{"field": "code", "message": "wrong code"}]
    assert statuses == [422, 422, 422, 422, 423]
    right = await harness.http.post(
        f"/v1/verifications/{vid}/confirm", json={"code": code}, headers=harness.partner()
    )
    assert right.status_code == 423
    assert right.json()["type"].endswith("/verification-locked")


async def test_expired_verification(harness: Harness) -> None:
    details = await _holder(harness)
    vid = (await _start(harness, details)).json()["verification_id"]
    code = await _code(harness, details["phone"])
    async with harness.state.runtime.db.sessionmaker() as s:
        await s.execute(
            text("UPDATE verification SET expires_at = created_at WHERE verification_id = :v"),
            {"v": vid},
        )
        await s.commit()
    resp = await harness.http.post(
        f"/v1/verifications/{vid}/confirm", json={"code": code}, headers=harness.partner()
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/verification-expired")


async def test_bad_input_names_the_field_and_kind_is_checked(harness: Harness) -> None:
    details = await _holder(harness)
    resp = await _start(harness, {**details, "phone": "12345"})
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == ["phone"]
    assert details["phone"] not in resp.text
    extra = await _start(harness, {**details, "status": "verified"})
    assert extra.status_code == 422
    ops = await harness.http.post("/v1/verifications", json=details, headers=harness.ops())
    assert ops.status_code == 403
    anonymous = await harness.http.post("/v1/verifications", json=details)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "harness", [{"verification_rate_per_id_number": "2/minute"}], indirect=True
)
async def test_rate_limit_per_id_number(harness: Harness) -> None:
    details = await _holder(harness)
    codes = [
        (await _start(harness, {**details, "phone": "13900000000"})).status_code for _ in range(3)
    ]
    assert codes == [422, 422, 429]
    limited = await _start(harness, details)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


async def _provider(h: Harness) -> tuple[str, ClientKey]:
    key = ClientKey.new()
    created = await h.register(kind="face_provider", name="Dev face", jwks=key.jwks)
    return created["client_id"], key


async def test_face_attestation_verifies_at_once(harness: Harness) -> None:
    details = await _holder(harness)
    provider, key = await _provider(harness)
    resp = await _start(
        harness, {**details, "face_attestation": key.face(provider, details["id_number"])}
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "verified"
    assert body["method"] == "face"
    assert body["identity_assertion"].count(".") == 2


async def test_face_attestation_refusals(harness: Harness) -> None:
    details = await _holder(harness)
    provider, key = await _provider(harness)
    forger = ClientKey.new()
    partner_key = ClientKey.new()
    partner = (await harness.register(kind="partner_app", name="App", jwks=partner_key.jwks))[
        "client_id"
    ]
    idn = details["id_number"]
    cases = {
        "forged (unknown key)": forger.face(provider, idn),
        "expired": key.face(provider, idn, iat=int(time.time()) - 400, lifetime=120),
        "liveness below threshold": key.face(provider, idn, liveness=0.5),
        "match below threshold": key.face(provider, idn, match=0.5),
        "another ID number": key.face(provider, UNKNOWN_ID),
        "not a face provider": partner_key.face(partner, idn),
        "wrong audience": key.face(provider, idn, aud="urn:essc:issuance"),
    }
    for case, token in cases.items():
        resp = await _start(harness, {**details, "face_attestation": token})
        assert resp.status_code == 422, case
        assert resp.json()["type"].endswith("/face-attestation-rejected"), case
    replay = key.face(provider, idn)
    assert (await _start(harness, {**details, "face_attestation": replay})).status_code == 201
    again = await _start(harness, {**details, "face_attestation": replay})
    assert again.status_code == 422


@pytest.mark.parametrize("harness", [{"environment": "production"}], indirect=True)
async def test_sms_outbox_is_absent_in_production(harness: Harness) -> None:
    resp = await harness.http.get(
        "/v1/admin/sms-outbox", params={"phone": "13800138000"}, headers=harness.ops()
    )
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
