"""Money is a decimal string outside and int fen inside; everything else is refused."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from shared.money import Fen, FenOut, Quantity, format_fen, format_quantity, parse_fen


class Line(BaseModel):
    price: Fen
    qty: Quantity


class Out(BaseModel):
    total: FenOut


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0", 0), ("0.5", 50), ("0.05", 5), ("123.45", 12345), ("9999999999.99", 999_999_999_999)],
)
def test_parse_valid(text: str, fen: int) -> None:
    assert parse_fen(text) == fen
    assert Line(price=text, qty="1").price == fen  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    ["1.234", "-1", "1e3", "01", "10000000000", "", " 1", "1.", ".5", "NaN", "1,5", 1.5, 100, None],
)
def test_parse_invalid(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Line(price=bad, qty="1")  # type: ignore[arg-type]
    assert info.value.errors()[0]["loc"] == ("price",)


def test_round_trip_and_serialisation() -> None:
    assert format_fen(5) == "0.05"
    assert format_fen(-12345) == "-123.45"
    assert Out(total=1230).model_dump(mode="json") == {"total": "12.30"}
    line = Line(price="2.50", qty="1.5")  # type: ignore[arg-type]
    assert line.qty == 15000
    assert line.model_dump(mode="json") == {"price": "2.50", "qty": "1.5"}
    assert format_quantity(10000) == "1"


@pytest.mark.parametrize("bad", ["1.23456", "-2", "1e308", "10000000", 2])
def test_quantity_invalid(bad: object) -> None:
    with pytest.raises(ValidationError):
        Line(price="1", qty=bad)  # type: ignore[arg-type]
