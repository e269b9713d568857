"""The bill split against hand-computed cases (amounts in fen)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from settlement.calculator import (
    BillItem,
    HolderState,
    Terms,
    format_ratio,
    percent,
    round_fen,
    split_bill,
)

ONE = 10_000  # quantity 1 in ten-thousandths


def terms(
    deductible: int = 150_000,
    ratio: str = "0.85",
    class_b: str = "0.10",
    cap: int = 50_000_000,
    account: bool = True,
) -> Terms:
    return Terms(deductible, Decimal(ratio), Decimal(class_b), cap, account)


def state(balance: int = 0, used: int = 0, paid: int = 0) -> HolderState:
    return HolderState(balance, used, paid)


def test_the_domain_worked_example_to_the_fen() -> None:
    items = [
        BillItem("A1", "A", ONE, 1_200_000),
        BillItem("B1", "B", ONE, 600_000),
        BillItem("C1", "C", ONE, 200_000),
    ]
    split = split_bill(items, terms(), state(balance=100_000))
    t = split.totals
    assert t.total == 2_000_000
    assert t.fully_self_paid == 200_000
    assert t.class_b_self_pay == 60_000
    assert t.in_scope == 1_740_000
    assert t.deductible == 150_000
    assert t.fund_pay == 1_351_500  # (17,400 − 1,500) × 0.85 = 13,515.00
    assert t.account_pay == 100_000
    assert t.cash_pay == 548_500
    a, b, c = split.lines
    assert (a.deductible, a.fund_pay, a.account_pay, a.cash_pay) == (
        150_000,
        892_500,
        100_000,
        207_500,
    )
    assert (b.class_b_self_pay, b.in_scope, b.fund_pay, b.cash_pay) == (
        60_000,
        540_000,
        459_000,
        141_000,
    )
    assert (c.fully_self_paid, c.fund_pay, c.cash_pay) == (200_000, 0, 200_000)
    assert c.reason.startswith("Class C item: not covered, fully self-paid")
    assert "10% self-paid first (600.00)" in b.reason
    assert "1500.00 toward the deductible" in a.reason


def test_deductible_partly_used_earlier_in_the_year() -> None:
    split = split_bill([BillItem("A1", "A", ONE, 200_000)], terms(), state(used=100_000))
    assert split.deductible_remaining_before == 50_000
    assert split.totals.deductible == 50_000
    assert split.totals.fund_pay == 127_500  # (2,000 − 500) × 0.85
    assert split.totals.cash_pay == 72_500


def test_deductible_already_used_up_takes_nothing() -> None:
    split = split_bill([BillItem("A1", "A", ONE, 10_000)], terms(), state(used=150_000))
    assert split.totals.deductible == 0
    assert split.totals.fund_pay == 8_500


def test_cap_reached_in_the_middle_of_the_bill() -> None:
    items = [BillItem("A1", "A", ONE, 100_000), BillItem("A2", "A", ONE, 200_000)]
    split = split_bill(items, terms(deductible=0, ratio="0.90", cap=1_000_000), state(paid=900_000))
    assert split.cap_remaining_before == 100_000
    first, second = split.lines
    assert first.fund_pay == 90_000  # 0.9 × 1,000 fits under the 1,000 left
    assert second.fund_pay == 10_000  # only 100.00 of the cap was left
    assert split.totals.fund_pay == 100_000
    assert split.cap_reached
    assert "annual cap" in second.reason
    assert "annual cap" not in first.reason
    assert split.totals.cash_pay == 200_000


def test_cap_already_exhausted_pays_nothing_from_the_fund() -> None:
    split = split_bill(
        [BillItem("A1", "A", ONE, 50_000)], terms(deductible=0, cap=100), state(paid=100)
    )
    assert split.totals.fund_pay == 0
    assert split.totals.cash_pay == 50_000


def test_class_c_only_is_fully_self_paid_and_spends_no_deductible() -> None:
    split = split_bill([BillItem("C1", "C", 2 * ONE, 30_000)], terms(), state(balance=10_000))
    t = split.totals
    assert (t.total, t.fully_self_paid, t.in_scope, t.deductible, t.fund_pay) == (
        60_000, 60_000, 0, 0, 0,
    )  # fmt: skip
    assert (t.account_pay, t.cash_pay) == (10_000, 50_000)


def test_zero_balance_means_all_cash() -> None:
    split = split_bill([BillItem("A1", "A", ONE, 300_000)], terms(), state(balance=0))
    assert split.totals.account_pay == 0
    assert split.totals.cash_pay == 300_000 - split.totals.fund_pay


def test_policy_without_account_payment_leaves_the_balance_alone() -> None:
    split = split_bill(
        [BillItem("A1", "A", ONE, 300_000)], terms(account=False), state(balance=999_999)
    )
    assert split.totals.account_pay == 0


def test_price_above_its_cap_is_self_paid() -> None:
    # 3 units at 12.00 with a cap of 10.00: 6.00 over the cap; class B 10% of the 30.00 rest.
    split = split_bill(
        [BillItem("B1", "B", 3 * ONE, 1_200, price_cap_fen=1_000)],
        terms(deductible=0, ratio="0.5"),
        state(),
    )
    (ln,) = split.lines
    assert (ln.amount, ln.over_cap, ln.class_b_self_pay, ln.in_scope) == (3_600, 600, 300, 2_700)
    assert ln.fund_pay == 1_350
    assert "6.00 above the price cap is self-paid" in ln.reason


def test_rounding_the_fund_once_per_boundary_keeps_every_fen() -> None:
    # Three lines of 0.15 in scope at 85%: each exact share is 12.75 fen. Rounding each line
    # on its own gives 13 + 13 + 13 = 39 fen; the bill's fund is round(38.25) = 38 fen.
    items = [BillItem(f"A{i}", "A", ONE, 15) for i in range(3)]
    split = split_bill(items, terms(deductible=0), state())
    naive = sum(round_fen(Decimal("0.85") * ln.in_scope) for ln in split.lines)
    assert naive == 39
    assert split.totals.fund_pay == 38
    assert [ln.fund_pay for ln in split.lines] == [13, 13, 12]
    assert split.totals.fund_pay + split.totals.cash_pay == split.totals.total == 45


def test_holder_share_is_the_difference_never_a_second_rounding() -> None:
    # 1.01 at 50%: fund 50.5 → 51 fen. Rounding the holder's 50.5 too would make 102 of 101.
    split = split_bill([BillItem("A1", "A", ONE, 101)], terms(deductible=0, ratio="0.5"), state())
    assert split.totals.fund_pay == 51
    assert split.totals.cash_pay == 50
    assert round_fen(Decimal("50.5")) + round_fen(Decimal("50.5")) == 102


def test_fractional_quantities_round_each_line_once() -> None:
    # 0.3333 × 10.00 = 333.33 fen per line → 333; three lines total 999, not round(999.99).
    items = [BillItem(f"A{i}", "A", 3_333, 1_000) for i in range(3)]
    split = split_bill(items, terms(deductible=0, ratio="0.7"), state(balance=100))
    assert [ln.amount for ln in split.lines] == [333, 333, 333]
    t = split.totals
    assert t.total == 999
    assert t.fund_pay == round_fen(Decimal("0.7") * 999) == 699
    assert t.fund_pay + t.account_pay + t.cash_pay == t.total
    assert t.account_pay == 100


def test_class_b_share_rounds_half_up_within_the_line() -> None:
    # 0.05 at 10%: the share is 0.5 fen → 1 fen; the line still adds up to 5 fen.
    split = split_bill([BillItem("B1", "B", ONE, 5)], terms(deductible=0, ratio="1"), state())
    (ln,) = split.lines
    assert (ln.class_b_self_pay, ln.in_scope, ln.fund_pay) == (1, 4, 4)


@pytest.mark.parametrize(
    ("ratio", "text", "pct"), [("0.85", "0.8500", "85%"), ("0.125", "0.1250", "12.5%")]
)
def test_ratio_formatting(ratio: str, text: str, pct: str) -> None:
    assert format_ratio(Decimal(ratio)) == text
    assert percent(Decimal(ratio)) == pct


def test_bad_terms_are_refused() -> None:
    with pytest.raises(ValueError, match="ratios"):
        split_bill([BillItem("A", "A", ONE, 1)], terms(ratio="1.5"), state())
    with pytest.raises(ValueError, match="negative"):
        split_bill([BillItem("A", "A", ONE, 1)], terms(), state(balance=-1))
