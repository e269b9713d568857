"""The bill split (national transaction 2206): pure arithmetic, no I/O, no clock.

Order (domain reference §3): per line, class C is fully self-paid; the part of a unit price
above its cap is self-paid; class B first pays the policy's self-pay share; the rest is the
line's *in-scope* amount. Across the bill, in line order: the remaining yearly deductible is
taken from the in-scope amounts; the pooled fund pays the policy ratio of what is left, never
beyond the annual cap still remaining; the holder's share (line amount − fund) is paid from
the personal account while its balance lasts (if the policy lets it pay), the rest in cash.

Rounding rule (one rounding per boundary, half up, never a lost fen)
--------------------------------------------------------------------
All arithmetic is exact ``Decimal``. A value is rounded to the fen only where it becomes a
boundary, half a fen rounding up (``ROUND_HALF_UP``), and each part is the *difference of two
rounded boundaries*, never a separately rounded product:

1. Within a line, the running boundaries fully-self-paid │ + over-cap │ + class-B share │ =
   line amount are each rounded once; the parts are their differences. So a line's parts
   always add up to its (once-rounded) amount, and the amount is ``quantity × unit price``
   rounded once.
2. Across the bill, the fund's running total ``min(cap remaining, round(ratio × eligible so
   far))`` is rounded once per line; each line's fund share is the difference between its
   running total and the previous line's. The bill's fund is therefore exactly
   ``round(ratio × total eligible)`` (capped), whatever the number of lines — where rounding
   each line's product separately could gain or lose a fen per line.
3. Deductible, account and cash are integer fen by construction (minimums and differences).

Hence: every part is ≥ 0, fund + account + cash = total, the lines add up to the totals, and
the fund never exceeds the cap remaining.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Literal

from shared.money import format_fen

Category = Literal["A", "B", "C"]
QUANTITY_SCALE = 10_000  # quantities are int ten-thousandths of a unit
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class BillItem:
    """One bill line: ``quantity`` in ten-thousandths of a unit, prices in fen."""

    code: str
    category: Category
    quantity: int
    unit_price_fen: int
    price_cap_fen: int | None = None


@dataclass(frozen=True, slots=True)
class Terms:
    """The policy's figures for this visit (visit type, hospital level and age band resolved)."""

    deductible_fen: int
    fund_ratio: Decimal
    class_b_share: Decimal
    annual_cap_fen: int
    account_may_pay: bool


@dataclass(frozen=True, slots=True)
class HolderState:
    """What the holder has left this year: account balance, deductible used, fund paid."""

    balance_fen: int
    deductible_used_fen: int
    fund_paid_fen: int


@dataclass(frozen=True, slots=True)
class LineSplit:
    """One line's breakdown in fen (parts add up to ``amount``) and its plain reason."""

    code: str
    amount: int
    fully_self_paid: int
    over_cap: int
    class_b_self_pay: int
    in_scope: int
    deductible: int
    fund_pay: int
    account_pay: int
    cash_pay: int
    reason: str

    @property
    def self_paid(self) -> int:
        """What the holder pays before any insurance applies (2204's self-paid amounts)."""
        return self.fully_self_paid + self.over_cap + self.class_b_self_pay


@dataclass(frozen=True, slots=True)
class Totals:
    total: int
    fully_self_paid: int
    over_cap: int
    class_b_self_pay: int
    in_scope: int
    deductible: int
    fund_pay: int
    account_pay: int
    cash_pay: int


@dataclass(frozen=True, slots=True)
class Split:
    lines: tuple[LineSplit, ...]
    totals: Totals
    deductible_remaining_before: int
    cap_remaining_before: int
    cap_reached: bool


def round_fen(value: Decimal) -> int:
    """Round a Decimal amount of fen to an int, half a fen up."""
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


def line_amount_exact(item: BillItem) -> Decimal:
    """``quantity × unit price`` in fen, exact."""
    return Decimal(item.quantity) * item.unit_price_fen / QUANTITY_SCALE


def line_amount(item: BillItem) -> int:
    """The line's amount in fen, rounded once (what the bill shows)."""
    return round_fen(line_amount_exact(item))


def _intrinsic(item: BillItem, class_b_share: Decimal) -> tuple[int, int, int, int, int]:
    """(amount, fully self-paid, over cap, class-B share, in scope) in fen for one line."""
    amount = line_amount_exact(item)
    if item.category == "C":
        whole = round_fen(amount)
        return whole, whole, 0, 0, 0
    over = Decimal(0)
    if item.price_cap_fen is not None and item.unit_price_fen > item.price_cap_fen:
        over = Decimal(item.quantity) * (item.unit_price_fen - item.price_cap_fen) / QUANTITY_SCALE
    share = (amount - over) * class_b_share if item.category == "B" else Decimal(0)
    b_over = round_fen(over)
    b_share = round_fen(over + share)
    b_amount = round_fen(amount)
    return b_amount, 0, b_over, b_share - b_over, b_amount - b_share


def split_bill(items: list[BillItem], terms: Terms, state: HolderState) -> Split:
    """Split a bill into fund, personal account and cash, line by line.

    Pure: no I/O and no clock. Raises ValueError for a negative input or a ratio outside
    [0, 1]; callers validate bills before (every figure here is already int fen).
    """
    if not (0 <= terms.fund_ratio <= 1 and 0 <= terms.class_b_share <= 1):
        raise ValueError("ratios must lie in [0, 1]")
    if min(state.balance_fen, state.deductible_used_fen, state.fund_paid_fen) < 0:
        raise ValueError("holder state must not be negative")
    with localcontext() as ctx:
        ctx.prec = 60
        return _split(items, terms, state)


def _split(items: list[BillItem], terms: Terms, state: HolderState) -> Split:
    ded_left = max(0, terms.deductible_fen - state.deductible_used_fen)
    cap_left = max(0, terms.annual_cap_fen - state.fund_paid_fen)
    balance_left = state.balance_fen if terms.account_may_pay else 0
    ded_before, cap_before = ded_left, cap_left
    eligible_so_far = 0
    fund_so_far = 0
    cap_reached = False
    lines: list[LineSplit] = []
    for item in items:
        amount, fsp, over, b_self, in_scope = _intrinsic(item, terms.class_b_share)
        deductible = min(in_scope, ded_left)
        ded_left -= deductible
        eligible_so_far += in_scope - deductible
        uncapped = round_fen(terms.fund_ratio * eligible_so_far)
        running = min(cap_left, uncapped)
        line_capped = uncapped > cap_left and in_scope - deductible > 0
        cap_reached = cap_reached or line_capped
        fund = running - fund_so_far
        fund_so_far = running
        share = amount - fund
        account = min(balance_left, share)
        balance_left -= account
        cash = share - account
        lines.append(
            LineSplit(
                code=item.code,
                amount=amount,
                fully_self_paid=fsp,
                over_cap=over,
                class_b_self_pay=b_self,
                in_scope=in_scope,
                deductible=deductible,
                fund_pay=fund,
                account_pay=account,
                cash_pay=cash,
                reason=_reason(
                    item,
                    terms,
                    fsp,
                    over,
                    b_self,
                    in_scope,
                    deductible,
                    fund,
                    account,
                    cash,
                    line_capped,
                ),
            )
        )
    totals = Totals(
        total=sum(x.amount for x in lines),
        fully_self_paid=sum(x.fully_self_paid for x in lines),
        over_cap=sum(x.over_cap for x in lines),
        class_b_self_pay=sum(x.class_b_self_pay for x in lines),
        in_scope=sum(x.in_scope for x in lines),
        deductible=sum(x.deductible for x in lines),
        fund_pay=sum(x.fund_pay for x in lines),
        account_pay=sum(x.account_pay for x in lines),
        cash_pay=sum(x.cash_pay for x in lines),
    )
    return Split(tuple(lines), totals, ded_before, cap_before, cap_reached)


def format_ratio(ratio: Decimal) -> str:
    """A ratio as the contract writes it: four decimals (``"0.8500"``)."""
    return f"{ratio.quantize(Decimal('0.0001')):.4f}"


def percent(ratio: Decimal) -> str:
    """``0.85`` → ``"85%"``, ``0.125`` → ``"12.5%"``."""
    text = f"{(ratio * 100).normalize():f}"
    return text + "%"


def _reason(
    item: BillItem,
    terms: Terms,
    fsp: int,
    over: int,
    b_self: int,
    in_scope: int,
    deductible: int,
    fund: int,
    account: int,
    cash: int,
    capped: bool,
) -> str:
    parts: list[str] = []
    if item.category == "C":
        parts.append("Class C item: not covered, fully self-paid")
    else:
        if over:
            parts.append(f"{format_fen(over)} above the price cap is self-paid")
        if item.category == "B":
            parts.append(
                f"class B: {percent(terms.class_b_share)} self-paid first ({format_fen(b_self)})"
            )
        else:
            parts.append("class A")
        parts.append(f"{format_fen(in_scope)} in scope")
        if deductible:
            parts.append(f"{format_fen(deductible)} toward the deductible")
        parts.append(f"fund pays {format_fen(fund)} ({percent(terms.fund_ratio)})")
        if capped:
            parts.append("limited by the annual cap")
    if account:
        parts.append(f"personal account {format_fen(account)}")
    if cash:
        parts.append(f"cash {format_fen(cash)}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
