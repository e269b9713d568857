"""The service against a plain-Python model of one holder's money (hypothesis, PostgreSQL).

Random sequences of quote, settle, replay, refund and top-up steps; after every step the
service's account, annual totals and ledger check must agree with the model. Policy:
Shanghai, inpatient, level-3 hospital, under 45 (deductible 1,500, fund 85%, cap 600,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from devkit.peerstub import StubServer
from shared.money import format_fen
from support.settlement_app import Api, Hospital, line, make_settings, running

pytestmark = pytest.mark.postgres

DEDUCTIBLE, RATIO, CAP = 150_000, Decimal("0.85"), 60_000_000


@dataclass
class Quote:
    quote_id: str
    assumed: tuple[int, int, int]
    total: int
    deductible: int
    fund: int
    account: int
    settled: bool = False


@dataclass
class Settled:
    settlement_id: str
    key: str
    quote_id: str
    body: dict[str, Any]
    quote: Quote
    refunded: bool = False


def fen(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac)


lines = st.lists(
    st.tuples(st.sampled_from(["A", "C"]), st.integers(1, 300_000)), min_size=1, max_size=4
)


class LedgerMachine(RuleBasedStateMachine):
    api: Api
    loop: asyncio.AbstractEventLoop
    quotes = Bundle("quotes")
    settlements = Bundle("settlements")

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(opening=st.integers(0, 400_000))
    def open_holder(self, opening: int) -> None:
        self.hospital: Hospital = self.api.hospital("310000", 3)
        self.holder = self.run(self.api.open_holder(balance_fen=opening))
        self.balance, self.used, self.paid = opening, 0, 0

    @rule(target=quotes, bill=lines)
    def quote(self, bill: list[tuple[str, int]]) -> Quote:
        items = [line(f"X{i}", cat, format_fen(price)) for i, (cat, price) in enumerate(bill)]
        resp = self.run(self.hospital.quote(self.holder, items))
        assert resp.status_code == 201, resp.text
        totals = resp.json()["totals"]
        in_scope = sum(p for c, p in bill if c == "A")
        total = sum(p for _, p in bill)
        ded = min(in_scope, max(0, DEDUCTIBLE - self.used))
        fund = min(
            CAP - self.paid,
            int((RATIO * (in_scope - ded)).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        )
        account = min(self.balance, total - fund)
        expected = {"total": total, "deductible": ded, "fund_pay": fund, "account_pay": account,
                    "cash_pay": total - fund - account}  # fmt: skip
        assert {k: fen(totals[k]) for k in expected} == expected
        return Quote(resp.json()["quote_id"], (self.balance, self.used, self.paid), total, ded,
                     fund, account)  # fmt: skip

    @rule(target=settlements, q=quotes)
    def settle(self, q: Quote) -> Settled | Any:
        key = secrets.token_hex(8)
        resp = self.run(self.hospital.settle(q.quote_id, key))
        if q.settled:
            assert resp.status_code == 409
            assert resp.json()["type"].endswith("/quote-already-settled")
            return multiple()
        if q.assumed != (self.balance, self.used, self.paid):
            assert resp.status_code == 409
            assert resp.json()["type"].endswith("/quote-stale")
            return multiple()
        assert resp.status_code == 201, resp.text
        q.settled = True
        self.balance -= q.account
        self.used += q.deductible
        self.paid += q.fund
        body = resp.json()
        return Settled(body["settlement_id"], key, q.quote_id, body, q)

    @rule(s=settlements)
    def replay(self, s: Settled) -> None:
        resp = self.run(self.hospital.settle(s.quote_id, s.key))
        assert resp.status_code == 201
        assert resp.json() == s.body
        assert resp.headers["idempotency-replayed"] == "true"

    @rule(s=settlements)
    def refund(self, s: Settled) -> None:
        resp = self.run(self.hospital.refund(s.settlement_id))
        if s.refunded:
            assert resp.status_code == 409
            return
        assert resp.status_code == 201, resp.text
        s.refunded = True
        self.balance += s.quote.account
        self.used -= s.quote.deductible
        self.paid -= s.quote.fund

    @rule(amount=st.integers(1, 100_000))
    def top_up(self, amount: int) -> None:
        resp = self.run(
            self.api.client.post(
                f"/v1/admin/holders/{self.holder}/top-ups",
                json={"amount": format_fen(amount), "reference": secrets.token_hex(6)},
                headers=self.api.ops(),
            )
        )
        assert resp.status_code == 201, resp.text
        self.balance += amount
        assert fen(resp.json()["balance"]) == self.balance

    @invariant()
    def books_agree_with_the_model(self) -> None:
        if not hasattr(self, "holder"):
            return
        account = self.run(self.api.balance(self.holder))
        assert fen(account["balance"]) == self.balance
        assert fen(account["deductible_used"]) == self.used
        assert fen(account["fund_paid"]) == self.paid
        check = self.run(self.api.ledger_check())
        assert check["balanced"] is True, check


def test_service_matches_the_model(
    pg_database: str, tmp_path: Path, stub_server: StubServer
) -> None:
    config = make_settings(pg_database, tmp_path, stub_server, risk_hold_score=1_000_000)
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        api = loop.run_until_complete(stack.enter_async_context(running(config, stub_server.stub)))
        machine = type("Machine", (LedgerMachine,), {"api": api, "loop": loop})
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=12,
                stateful_step_count=14,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                derandomize=True,
            ),
        )
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
