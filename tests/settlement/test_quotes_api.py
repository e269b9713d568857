"""Pre-settlement through the HTTP API (SQLite; no money moves): the contract's shapes,
validation naming fields, authorisation, the worked example, cross-region visits."""

from __future__ import annotations

import pytest

from support.settlement_app import Api, line, new_ref

pytestmark = pytest.mark.asyncio

WORKED = [line("A1", "A", "12000.00"), line("B1", "B", "6000.00"), line("C1", "C", "2000.00")]


async def test_worked_example_through_the_api(sqlite_api: Api) -> None:
    holder = await sqlite_api.open_holder(balance_fen=100_000)
    resp = await sqlite_api.hospital("310000", 3).quote(holder, WORKED)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["totals"] == {
        "total": "20000.00",
        "fully_self_paid": "2000.00",
        "over_cap": "0.00",
        "class_b_self_pay": "600.00",
        "in_scope": "17400.00",
        "deductible": "1500.00",
        "fund_pay": "13515.00",
        "fund_ratio": "0.8500",
        "account_pay": "1000.00",
        "cash_pay": "5485.00",
    }
    assert [ln["code"] for ln in body["lines"]] == ["A1", "B1", "C1"]
    assert body["lines"][2]["self_paid"] == "2000.00"
    assert body["cross_region"] is False
    assert body["insured_region"] == body["treatment_region"] == "310000"
    assert body["age_band"] == "under_45"
    assert any("Class C items are fully self-paid: 2000.00" in r for r in body["rules"])
    assert any("Pooled fund pays 85% (inpatient, level 3, under 45)" in r for r in body["rules"])
    assert body["risk"] == {"score": 0, "held": False, "rules": []}


async def test_cross_region_uses_the_insured_regions_policy(sqlite_api: Api) -> None:
    holder = await sqlite_api.open_holder(region="310000", balance_fen=0)
    qingdao = sqlite_api.hospital("370200", 3)
    resp = await qingdao.quote(holder, [line("A1", "A", "2000.00")], insured_region="310000")
    body = resp.json()
    assert resp.status_code == 201, body
    assert body["cross_region"] is True
    assert (body["insured_region"], body["treatment_region"]) == ("310000", "370200")
    # Shanghai: deductible 1,500, 85% inpatient → (2000 − 1500) × 0.85 = 425.00.
    assert body["totals"]["deductible"] == "1500.00"
    assert body["totals"]["fund_pay"] == "425.00"
    assert any(r.startswith("Cross-region visit: treated in 370200") for r in body["rules"])


async def test_age_band_and_hospital_level_choose_the_ratio(sqlite_api: Api) -> None:
    holder = await sqlite_api.open_holder(balance_fen=0)
    h = sqlite_api.hospital("310000", 1)
    resp = await h.quote(
        holder, [line("A1", "A", "2500.00")], visit="outpatient", insurance_type="retired"
    )
    body = resp.json()
    assert body["age_band"] == "retired"
    assert body["totals"]["fund_ratio"] == "0.8500"  # Shanghai outpatient, level 1, retired
    assert body["totals"]["fund_pay"] == "850.00"  # (2500 − 1500) × 0.85


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"unit_price": 12.5}, "items[2].unit_price"),
        ({"unit_price": "12.345"}, "items[2].unit_price"),
        ({"unit_price": "-1.00"}, "items[2].unit_price"),
        ({"quantity": "1.00001"}, "items[2].quantity"),
        ({"category": "D"}, "items[2].category"),
        ({"code": "bad\x00code"}, "items[2].code"),
        ({"surprise": 1}, "items[2].surprise"),
    ],
)
async def test_bad_lines_are_422_naming_the_field(
    sqlite_api: Api, patch: dict[str, object], field: str
) -> None:
    items = [line("A1", "A", "1.00"), line("A2", "A", "1.00"), {**line("A3", "A", "1.00"), **patch}]
    resp = await sqlite_api.hospital().quote(new_ref(), items)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in resp.json()["errors"]]


async def test_a_bill_over_the_money_range_is_422_not_500(sqlite_api: Api) -> None:
    items = [line("A1", "A", "9999999999.99", quantity="1000")]
    resp = await sqlite_api.hospital().quote(new_ref(), items)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "items[0].quantity"


async def test_a_zero_bill_is_refused(sqlite_api: Api) -> None:
    resp = await sqlite_api.hospital().quote(new_ref(), [line("A1", "A", "0.00")])
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "items"


async def test_unknown_or_foreign_token_is_422_naming_it(sqlite_api: Api) -> None:
    holder = await sqlite_api.open_holder()
    other = sqlite_api.hospital()
    token = sqlite_api.hospital().token(holder)  # issued to another hospital
    for tok in (token, "x" * 40):
        resp = await other.quote(holder, [line("A1", "A", "1.00")], token=tok)
        assert resp.status_code == 422
        body = resp.json()
        assert body["type"].endswith("/settlement-token-invalid")
        assert body["errors"] == [
            {"field": "settlement_token", "message": "unknown, expired or not yours"}
        ]


async def test_level_one_ecard_cannot_pay(sqlite_api: Api) -> None:
    resp = await sqlite_api.hospital().quote(new_ref(), [line("A1", "A", "1.00")], sign_level=1)
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/payment-not-enabled")


async def test_region_without_policy_is_422(sqlite_api: Api) -> None:
    resp = await sqlite_api.hospital().quote(
        new_ref(), [line("A1", "A", "1.00")], insured_region="620100"
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/policy-missing")


async def test_only_hospitals_with_the_scope_may_quote(sqlite_api: Api) -> None:
    h = sqlite_api.hospital()
    body = {"settlement_token": h.token(new_ref()), "visit": {"type": "inpatient"},
            "items": [line("A1", "A", "1.00")]}  # fmt: skip
    no_token = await sqlite_api.client.post("/v1/settlements/quotes", json=body)
    assert no_token.status_code == 401
    read_only = await sqlite_api.client.post(
        "/v1/settlements/quotes", json=body, headers=h.headers("settlement:read")
    )
    assert read_only.status_code == 403
    partner = await sqlite_api.client.post(
        "/v1/settlements/quotes", json=body, headers=sqlite_api.partner()
    )
    assert partner.status_code == 403


async def test_hospital_token_without_region_is_403(sqlite_api: Api) -> None:
    from shared.tokens.claims import ClientKind

    headers = sqlite_api.headers("h-noregion", ClientKind.HOSPITAL, "settlement:write")
    body = {"settlement_token": "y" * 40, "visit": {"type": "inpatient"},
            "items": [line("A1", "A", "1.00")]}  # fmt: skip
    resp = await sqlite_api.client.post("/v1/settlements/quotes", json=body, headers=headers)
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/hospital-profile-incomplete")


async def test_the_embedded_database_settles_and_refunds_too(sqlite_api: Api) -> None:
    """``make run``'s default (SQLite): the same flow works; PostgreSQL tests prove the money."""
    holder = await sqlite_api.open_holder(balance_fen=100_000)
    h = sqlite_api.hospital("310000", 3)
    settled = await h.quote_and_settle(holder, WORKED)
    assert settled["totals"]["fund_pay"] == "13515.00"
    assert (await sqlite_api.balance(holder))["balance"] == "0.00"
    refund = await h.refund(settled["settlement_id"])
    assert refund.status_code == 201, refund.text
    assert (await sqlite_api.balance(holder))["balance"] == "1000.00"
    check = await sqlite_api.ledger_check()
    assert check["balanced"] is True, check
    assert check["transactions"] >= 3
    from settlement.businessday import business_date

    day = business_date(sqlite_api.app.state.parts.now(), 8).isoformat()
    recon = await sqlite_api.client.get(
        "/v1/reconciliation/daily", params={"date": day}, headers=h.headers()
    )
    assert recon.json()["count"] == 1
    assert recon.json()["refund_total"] == "20000.00"
    history = await sqlite_api.client.get(
        f"/v1/ecards/ec_{holder}_partner-1/settlements", headers=sqlite_api.partner()
    )
    assert history.json()["items"][0]["status"] == "refunded"
