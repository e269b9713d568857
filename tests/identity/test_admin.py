"""Ops operations: holder import (per-row errors, idempotency), clients, card status and events."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from identity.events.repository import append_events
from support.identity import ClientKey, Harness, fresh_rows

pytestmark = pytest.mark.asyncio


async def _events(h: Harness, after: int = 0) -> list[dict[str, Any]]:
    resp = await h.http.get(
        "/internal/v1/events", params={"after": after, "limit": 500}, headers=h.service("issuance")
    )
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def _last_seq(h: Harness) -> int:
    seq = 0
    while True:
        page = await h.http.get(
            "/internal/v1/events",
            params={"after": seq, "limit": 500},
            headers=h.service("settlement"),
        )
        body = page.json()
        if not body["items"]:
            return seq
        seq = body["next_after"]


async def test_import_reports_row_errors_and_is_idempotent(harness: Harness) -> None:
    rows = fresh_rows(4)
    bad_id = {
        **rows[1],
        "id_number": rows[1]["id_number"][:17] + ("0" if rows[1]["id_number"][17] != "0" else "1"),
    }
    bad_many = {**rows[2], "phone": "02112345678", "name": "Bob1", "account_balance": 12.5}
    batch = [rows[0], bad_id, bad_many, rows[3], {**rows[3], "card_number": "ZZZZZZZZZ"}]
    before = await _last_seq(harness)
    result = await harness.import_rows(batch)
    assert result["created"] == 2
    assert result["updated"] == 0
    rejected = {r["index"]: sorted(e["field"] for e in r["errors"]) for r in result["rejected"]}
    assert rejected == {1: ["id_number"], 2: ["account_balance", "name", "phone"], 4: ["id_number"]}
    text_out = str(result)
    assert rows[1]["id_number"][:17] not in text_out
    assert rows[2]["phone"] not in text_out
    events = await _events(harness, before)
    assert [e["type"] for e in events] == ["holder.upserted", "holder.upserted"]
    balances = sorted(e["payload"]["opening_balance_fen"] for e in events)
    expected = sorted(round(float(r["account_balance"]) * 100) for r in (rows[0], rows[3]))
    assert balances == expected
    # Same batch again: nothing new, nothing duplicated.
    again = await harness.import_rows([rows[0], rows[3]])
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert await _events(harness, await _last_seq(harness)) == []
    # A changed phone is an update with an event.
    changed = await harness.import_rows([{**rows[0], "phone": "13912345678"}])
    assert (changed["created"], changed["updated"]) == (0, 1)


async def test_import_refuses_a_card_of_another_holder_and_bounds_the_batch(
    harness: Harness,
) -> None:
    a, b = fresh_rows(2)
    await harness.import_rows([a])
    result = await harness.import_rows([{**b, "card_number": a["card_number"]}])
    assert result["created"] == 0
    assert result["rejected"] == [
        {
            "index": 0,
            "errors": [{"field": "card_number", "message": "is registered to another holder"}],
        }
    ]
    too_many = await harness.http.post(
        "/v1/admin/holders", json={"holders": [a] * 1001}, headers=harness.ops()
    )
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "holders"
    partner = await harness.http.post(
        "/v1/admin/holders", json={"holders": [a]}, headers=harness.partner()
    )
    assert partner.status_code == 403


async def test_card_status_transitions_and_events_in_order(harness: Harness) -> None:
    (row,) = fresh_rows(1)
    await harness.import_rows([row])
    start = await _last_seq(harness)
    card = row["card_number"]

    async def change(body: dict[str, Any], number: str = card) -> Any:
        return await harness.http.post(
            f"/v1/admin/cards/{number}/status", json=body, headers=harness.ops()
        )

    assert (await change({"status": "suspended"})).json()["previous_status"] == "active"
    assert (await change({"status": "active"})).status_code == 200
    same = await change({"status": "active"})
    assert same.status_code == 200
    assert same.json()["changed"] is False
    missing = await change({"status": "replaced"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "new_card_number"
    replaced = await change({"status": "replaced", "new_card_number": "NEWCARD01"})
    assert replaced.status_code == 200, replaced.text
    final = await change({"status": "active"})
    assert final.status_code == 409
    assert final.json()["type"].endswith("/card-transition-invalid")
    assert (await change({"status": "lost"}, "NOSUCHCRD")).status_code == 404
    taken = await change({"status": "replaced", "new_card_number": card}, "NEWCARD01")
    assert taken.status_code == 409
    events = await _events(harness, start)
    assert [e["payload"]["status"] for e in events] == ["suspended", "active", "replaced"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    last = events[-1]["payload"]
    assert last["previous_status"] == "active"
    assert last["new_card_number_masked"] == "NE*****01"
    assert last["new_card_ref"]
    assert last["new_card_ref"] != last["card_ref"]
    profile = await harness.http.get(
        f"/internal/v1/holders/{last['holder_ref']}", headers=harness.service("issuance")
    )
    assert profile.json()["card_ref"] == last["new_card_ref"]
    assert profile.json()["card_status"] == "active"
    # The database itself refuses a second active card for the holder.
    async with harness.state.runtime.db.sessionmaker() as s:
        stmt = text("UPDATE card SET status = 'active' WHERE card_number = :n")
        with pytest.raises(Exception, match=r"(?i)unique"):
            await s.execute(stmt, {"n": card})


async def test_outbox_rows_exist_only_when_the_transaction_commits(harness: Harness) -> None:
    start = await _last_seq(harness)
    db = harness.state.runtime.db
    async with db.sessionmaker() as s:
        await append_events(s, [("holder.upserted", {"probe": "rolled-back"})])
        await s.rollback()
    assert await _events(harness, start) == []
    async with db.sessionmaker() as s:
        await append_events(s, [("holder.upserted", {"probe": "committed"})])
        await s.commit()
    assert [e["payload"] for e in await _events(harness, start)] == [{"probe": "committed"}]
    forbidden = await harness.http.get("/internal/v1/events", headers=harness.partner())
    assert forbidden.status_code == 403


async def test_client_registration_rules(harness: Harness) -> None:
    ops = harness.ops()

    async def post(body: dict[str, Any]) -> Any:
        return await harness.http.post("/v1/admin/clients", json=body, headers=ops)

    hospital = await post({"kind": "hospital", "name": "H", "sandbox_secret": True})
    assert hospital.status_code == 422
    assert {e["field"] for e in hospital.json()["errors"]} == {"region_code", "level"}
    two = await post(
        {"kind": "scanner", "name": "S", "sandbox_secret": True, "jwks": ClientKey.new().jwks}
    )
    assert two.status_code == 422
    wrong_scope = await post(
        {"kind": "scanner", "name": "S", "sandbox_secret": True, "scopes": ["ops"]}
    )
    assert wrong_scope.json()["errors"] == [
        {"field": "scopes[0]", "message": "not a scope of a scanner client"}
    ]
    private = ClientKey.new().jwks
    private["keys"][0]["d"] = "AAAA"
    leaked = await post({"kind": "partner_app", "name": "P", "jwks": private})
    assert leaked.status_code == 422
    assert leaked.json()["errors"][0]["field"] == "jwks"
    ssrf = await post(
        {"kind": "partner_app", "name": "P", "jwks_uri": "https://10.0.0.1/jwks.json"}
    )
    assert ssrf.status_code == 422
    assert ssrf.json()["errors"][0]["field"] == "jwks_uri"
    app = await post(
        {
            "kind": "partner_app",
            "name": "Webhook app",
            "jwks": ClientKey.new().jwks,
            "webhook_url": "https://partner.example/hooks",
        }
    )
    assert app.status_code == 201
    created = app.json()
    assert created["webhook_secret"].startswith("whsec_")
    assert "client_secret" not in created
    info = await harness.http.get(
        f"/internal/v1/clients/{created['client_id']}", headers=harness.service("issuance")
    )
    assert info.status_code == 200
    assert info.json()["webhook_secret"] == created["webhook_secret"]
    assert info.json()["kind"] == "partner_app"
    assert (
        await harness.http.get(
            f"/internal/v1/clients/{created['client_id']}", headers=harness.service("settlement")
        )
    ).status_code == 403
