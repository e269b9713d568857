"""Settlement and refund on PostgreSQL: money moves once, on balanced books, and only for the
hospital that owns the settlement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from support.settlement_app import Api, line

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

WORKED = [line("A1", "A", "12000.00"), line("B1", "B", "6000.00"), line("C1", "C", "2000.00")]


async def test_settle_posts_the_split_once_and_replays_the_answer(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=150_000)
    h = pg_api.hospital("310000", 3)
    quote = (await h.quote(holder, WORKED)).json()
    first = await h.settle(quote["quote_id"], key="k-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "settled"
    assert body["totals"] == quote["totals"]
    assert body["totals"]["account_pay"] == "1500.00"
    again = await h.settle(quote["quote_id"], key="k-1")
    assert again.status_code == 201
    assert again.json() == body
    assert again.headers["idempotency-replayed"] == "true"
    account = await pg_api.balance(holder)
    assert account["balance"] == "0.00"
    assert account["deductible_used"] == "1500.00"
    assert account["fund_paid"] == "13515.00"
    assert account["cap_remaining"] == "586485.00"  # Shanghai's 600,000 cap
    check = await pg_api.ledger_check()
    assert check["balanced"] is True
    token = next(
        t for t in pg_api.stub.tokens.values() if t.info.redemption_ref == quote["quote_id"]
    )
    assert token.redemptions == 1
    metrics = (await pg_api.client.get("/metrics")).text
    assert 'essc_settlements_total{outcome="success",region="310000"}' in metrics
    assert "essc_idempotent_replays_total 1.0" in metrics


async def test_the_same_key_with_another_body_is_422_and_no_key_is_400(pg_api: Api) -> None:
    holder = await pg_api.open_holder()
    h = pg_api.hospital()
    q1 = (await h.quote(holder, [line("A1", "A", "10.00")])).json()
    assert (await h.settle(q1["quote_id"], key="same")).status_code == 201
    q2 = (await h.quote(holder, [line("A1", "A", "20.00")])).json()
    reused = await h.settle(q2["quote_id"], key="same")
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    headers = h.headers()
    missing = await pg_api.client.post(
        "/v1/settlements", json={"quote_id": q2["quote_id"]}, headers=headers
    )
    assert missing.status_code == 400
    assert missing.json()["type"].endswith("/idempotency-key-missing")


async def test_a_quote_settles_at_most_once(pg_api: Api) -> None:
    holder = await pg_api.open_holder()
    h = pg_api.hospital()
    q = (await h.quote(holder, [line("C1", "C", "10.00")])).json()
    assert (await h.settle(q["quote_id"])).status_code == 201
    second = await h.settle(q["quote_id"])
    assert second.status_code == 409
    assert second.json()["type"].endswith("/quote-already-settled")


async def test_changed_balance_makes_the_quote_stale_and_moves_nothing(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=50_000)
    h = pg_api.hospital()
    q = (await h.quote(holder, [line("A1", "A", "300.00")])).json()
    top = await pg_api.client.post(
        f"/v1/admin/holders/{holder}/top-ups",
        json={"amount": "10.00", "reference": "2026-11"},
        headers=pg_api.ops(),
    )
    assert top.status_code == 201, top.text
    assert top.json()["balance"] == "510.00"
    stale = await h.settle(q["quote_id"])
    assert stale.status_code == 409
    assert stale.json()["type"].endswith("/quote-stale")
    assert (await pg_api.balance(holder))["balance"] == "510.00"
    token = pg_api.stub.tokens[next(iter(k for k, t in pg_api.stub.tokens.items()
                                         if t.info.holder_ref == holder))]  # fmt: skip
    assert token.redemptions == 0, "a stale quote must not burn the settlement token"
    # The same token quotes again and settles.
    again = await h.quote(holder, [line("A1", "A", "300.00")], token=next(
        k for k, t in pg_api.stub.tokens.items() if t.info.holder_ref == holder))  # fmt: skip
    assert again.status_code == 201
    assert (await h.settle(again.json()["quote_id"])).status_code == 201
    async with pg_api.app.state.db.sessionmaker() as s:
        failures = (
            (
                await s.execute(
                    text("SELECT kind FROM risk_failure WHERE holder_ref = :h"), {"h": holder}
                )
            )
            .scalars()
            .all()
        )
    assert failures == ["quote-stale"]


async def test_an_expired_quote_is_422(pg_api: Api) -> None:
    holder = await pg_api.open_holder()
    h = pg_api.hospital()
    q = (await h.quote(holder, [line("A1", "A", "10.00")])).json()
    parts = pg_api.app.state.parts
    real = parts.clock
    parts.clock = lambda: real() + timedelta(minutes=11)
    try:
        resp = await h.settle(q["quote_id"])
    finally:
        parts.clock = real
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/quote-expired")


async def test_another_hospital_gets_404_everywhere(pg_api: Api) -> None:
    holder = await pg_api.open_holder()
    owner, other = pg_api.hospital(), pg_api.hospital()
    q = (await owner.quote(holder, [line("A1", "A", "10.00")])).json()
    assert (await other.settle(q["quote_id"])).status_code == 404
    s = await owner.settle(q["quote_id"])
    sid = s.json()["settlement_id"]
    got = await pg_api.client.get(f"/v1/settlements/{sid}", headers=other.headers())
    assert got.status_code == 404
    assert (await other.refund(sid)).status_code == 404
    mine = await pg_api.client.get(f"/v1/settlements/{sid}", headers=owner.headers())
    assert mine.status_code == 200
    assert mine.json()["lines"][0]["code"] == "A1"


async def test_refund_reverses_everything_once(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=100_000)
    h = pg_api.hospital()
    before = await pg_api.balance(holder)
    s = await h.quote_and_settle(holder, WORKED)
    after_settle = await pg_api.balance(holder)
    assert after_settle["balance"] == "0.00"
    r = await h.refund(s["settlement_id"], key="r-1")
    assert r.status_code == 201, r.text
    refund = r.json()
    assert refund["settlement_id"] == s["settlement_id"]
    assert refund["totals"] == s["totals"]
    assert (await h.refund(s["settlement_id"], key="r-1")).json() == refund
    second = await h.refund(s["settlement_id"], key="r-2")
    assert second.status_code == 409
    assert second.json()["type"].endswith("/settlement-already-refunded")
    assert await pg_api.balance(holder) == before
    got = await pg_api.client.get(f"/v1/settlements/{s['settlement_id']}", headers=h.headers())
    assert got.json()["status"] == "refunded"
    assert got.json()["refund"]["refund_id"] == refund["refund_id"]
    assert (await pg_api.ledger_check())["balanced"] is True


async def test_the_database_refuses_to_edit_the_books(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=1_000)
    await pg_api.hospital().quote_and_settle(holder, [line("A1", "A", "5.00")])
    engine = pg_api.app.state.db.engine
    statements = [
        "UPDATE ledger_entry SET amount_fen = amount_fen + 1",
        "DELETE FROM ledger_entry",
        "DELETE FROM ledger_tx",
        "UPDATE settlement SET total_fen = 1",
        "TRUNCATE ledger_entry CASCADE",
        f"UPDATE account SET balance_fen = -1 WHERE id = 'personal:{holder}'",
    ]
    for sql in statements:
        async with engine.connect() as conn:
            with pytest.raises(Exception, match=r"immutable|check constraint"):
                await conn.execute(text(sql))
            await conn.rollback()
    async with engine.connect() as conn:
        tx = "tx_unbalanced_test"
        await conn.execute(
            text("INSERT INTO ledger_tx (id, kind, ref, posted_at) VALUES (:t, 'test', :t, now())"),
            {"t": tx},
        )
        await conn.execute(
            text(
                "INSERT INTO ledger_entry (tx_id, account_id, amount_fen, posted_at) "
                "VALUES (:t, 'cash:clearing', 5, now()), (:t, 'cash:clearing', -4, now())"
            ),
            {"t": tx},
        )
        with pytest.raises(Exception, match="does not balance"):
            await conn.commit()
    assert (await pg_api.ledger_check())["balanced"] is True


async def test_reconciliation_is_derived_from_the_ledger(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=100_000)
    h = pg_api.hospital()
    s1 = await h.quote_and_settle(holder, WORKED)
    s2 = await h.quote_and_settle(holder, [line("C1", "C", "50.00")])
    await h.refund(s2["settlement_id"])
    today = s1["settled_at"][:10]
    parts = pg_api.app.state.parts
    from settlement.businessday import business_date

    day = business_date(parts.now(), 8).isoformat()
    resp = await pg_api.client.get(
        "/v1/reconciliation/daily", params={"date": day}, headers=h.headers()
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "date": day,
        "count": 2,
        "total": "20050.00",
        "fund_pay": "13515.00",
        "account_pay": "1000.00",
        "cash_pay": "5535.00",
        "refund_count": 1,
        "refund_total": "50.00",
        "refund_fund_pay": "0.00",
        "refund_account_pay": "0.00",
        "refund_cash_pay": "50.00",
        "net_total": "20000.00",
    }
    assert today  # settled_at is UTC; the business day may differ near midnight
    csv_resp = await pg_api.client.get(
        "/v1/reconciliation/daily",
        params={"date": day},
        headers={**h.headers(), "Accept": "text/csv"},
    )
    assert csv_resp.headers["content-type"].startswith("text/csv")
    rows = csv_resp.text.strip().splitlines()
    assert rows[0] == "type,id,settlement_id,posted_at,total,fund_pay,account_pay,cash_pay"
    assert [r.split(",")[0] for r in rows[1:]] == ["settlement", "settlement", "refund"]
    assert rows[3].endswith(",-50.00,0.00,0.00,-50.00")
    match = await pg_api.client.post(
        "/v1/reconciliation/checks",
        json={"date": day, "count": 2, "total": "20050.00", "fund_pay": "13515.00",
              "account_pay": "1000.00", "cash_pay": "5535.00",
              "settlement_ids": [s1["settlement_id"], s2["settlement_id"]]},
        headers=h.headers(),
    )  # fmt: skip
    assert match.json()["match"] is True
    assert match.json()["differences"] == []
    differs = await pg_api.client.post(
        "/v1/reconciliation/checks",
        json={"date": day, "count": 2, "total": "20060.00", "fund_pay": "13515.00",
              "account_pay": "1000.00", "cash_pay": "5545.00",
              "settlement_ids": [s1["settlement_id"], "s_unknown"]},
        headers=h.headers(),
    )  # fmt: skip
    body = differs.json()
    assert body["match"] is False
    assert {(d["kind"], d.get("field") or d.get("settlement_id")) for d in body["differences"]} == {
        ("figure", "total"),
        ("figure", "cash_pay"),
        ("settlement", s2["settlement_id"]),
        ("settlement", "s_unknown"),
    }
    assert len(body["detail"]) == 3
    other = await pg_api.client.get(
        "/v1/reconciliation/daily", params={"date": day}, headers=pg_api.hospital().headers()
    )
    assert other.json()["count"] == 0


async def test_self_service_and_the_issuance_summary(pg_api: Api) -> None:
    holder = await pg_api.open_holder(balance_fen=100_000)
    h = pg_api.hospital()
    ids = [
        (await h.quote_and_settle(holder, [line("C1", "C", f"{i + 1}.00")]))["settlement_id"]
        for i in range(5)
    ]
    ecard = f"ec_{holder}_partner-1"
    page1 = await pg_api.client.get(
        f"/v1/ecards/{ecard}/settlements", params={"limit": 2}, headers=pg_api.partner()
    )
    assert page1.status_code == 200
    seen = [x["settlement_id"] for x in page1.json()["items"]]
    cursor = page1.json()["next_cursor"]
    while cursor:
        page = await pg_api.client.get(
            f"/v1/ecards/{ecard}/settlements",
            params={"limit": 2, "cursor": cursor},
            headers=pg_api.partner(),
        )
        seen += [x["settlement_id"] for x in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert seen == list(reversed(ids))
    foreign = await pg_api.client.get(
        f"/v1/ecards/{ecard}/account", headers=pg_api.partner("partner-2")
    )
    assert foreign.status_code == 404
    bad = await pg_api.client.get(
        f"/v1/ecards/{ecard}/settlements", params={"cursor": "garbage"}, headers=pg_api.partner()
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"
    summary = await pg_api.client.get(
        f"/internal/v1/holders/{holder}/summary",
        params={"limit": 3},
        headers={"Authorization": f"Bearer {pg_api.stub.service_token('issuance')}"},
    )
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["balance_fen"] == 100_000 - 1_500
    assert [r["settlement_id"] for r in body["recent"]] == list(reversed(ids))[:3]
    refused = await pg_api.client.get(
        f"/internal/v1/holders/{holder}/summary",
        headers={"Authorization": f"Bearer {pg_api.stub.service_token('identity')}"},
    )
    assert refused.status_code == 403
