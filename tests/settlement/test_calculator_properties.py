"""Properties of the split for random bills, policies and holder states (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.calculator import BillItem, HolderState, Terms, round_fen, split_bill

ratios = st.integers(0, 10_000).map(lambda n: Decimal(n) / 10_000)
items = st.builds(
    BillItem,
    code=st.just("X"),
    category=st.sampled_from(["A", "B", "C"]),
    quantity=st.integers(0, 200_000),
    unit_price_fen=st.integers(0, 10_000_000),
    price_cap_fen=st.none() | st.integers(0, 10_000_000),
)
terms = st.builds(
    Terms,
    deductible_fen=st.integers(0, 500_000),
    fund_ratio=ratios,
    class_b_share=ratios,
    annual_cap_fen=st.integers(0, 100_000_000),
    account_may_pay=st.booleans(),
)
states = st.builds(
    HolderState,
    balance_fen=st.integers(0, 10_000_000),
    deductible_used_fen=st.integers(0, 600_000),
    fund_paid_fen=st.integers(0, 120_000_000),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(items, min_size=1, max_size=8), terms, states)
def test_the_split_always_closes(bill: list[BillItem], t: Terms, s: HolderState) -> None:
    split = split_bill(bill, t, s)
    tot = split.totals
    assert tot.fund_pay + tot.account_pay + tot.cash_pay == tot.total
    assert tot.fully_self_paid + tot.over_cap + tot.class_b_self_pay + tot.in_scope == tot.total
    cap_left = max(0, t.annual_cap_fen - s.fund_paid_fen)
    ded_left = max(0, t.deductible_fen - s.deductible_used_fen)
    assert tot.fund_pay <= cap_left
    assert tot.deductible == min(tot.in_scope, ded_left)
    # The fund is the bill-level product rounded once, capped.
    assert tot.fund_pay == min(cap_left, round_fen(t.fund_ratio * (tot.in_scope - tot.deductible)))
    assert tot.account_pay <= (s.balance_fen if t.account_may_pay else 0)
    for name in ("total", "fund_pay", "account_pay", "cash_pay", "deductible", "in_scope"):
        lines_sum = sum(getattr(ln, "amount" if name == "total" else name) for ln in split.lines)
        assert lines_sum == getattr(tot, name), name
    for ln in split.lines:
        parts = (ln.fully_self_paid, ln.over_cap, ln.class_b_self_pay, ln.in_scope,
                 ln.deductible, ln.fund_pay, ln.account_pay, ln.cash_pay)  # fmt: skip
        assert min(parts) >= 0
        assert ln.fully_self_paid + ln.over_cap + ln.class_b_self_pay + ln.in_scope == ln.amount
        assert ln.fund_pay + ln.account_pay + ln.cash_pay == ln.amount
        assert ln.fund_pay <= ln.in_scope - ln.deductible
