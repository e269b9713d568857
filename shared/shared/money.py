"""Money and quantities on the wire: decimal strings outside, integer fen inside. Never a float.

The public contract writes amounts as decimal strings in yuan with at most two
decimals (``"123.45"``), 0 ≤ amount ≤ 9999999999.99, and quantities as decimal
strings with at most four decimals. Inside the platform an amount is an ``int``
of fen (1 yuan = 100 fen). A JSON number, an exponent, a third decimal, a sign
or anything outside the range is refused with a message naming the rule.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

MAX_FEN = 999_999_999_999  # 9,999,999,999.99 yuan
MAX_QUANTITY_TEN_THOUSANDTHS = 99_999_999_9999  # 9,999,999.9999 units

_MONEY = re.compile(r"^(0|[1-9]\d{0,9})(\.\d{1,2})?$")
_QUANTITY = re.compile(r"^(0|[1-9]\d{0,6})(\.\d{1,4})?$")


def parse_fen(value: object) -> int:
    """A decimal string in yuan → int fen; raises ValueError with a plain reason."""
    if not isinstance(value, str):
        raise ValueError('must be a decimal string in yuan such as "123.45", not a number')
    if not _MONEY.match(value):
        raise ValueError(
            "must be a decimal string in yuan with at most two decimals, "
            'between "0" and "9999999999.99"'
        )
    whole, _, frac = value.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def format_fen(fen: int) -> str:
    """int fen → the contract's decimal string (always two decimals, e.g. ``"12.30"``)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def parse_quantity(value: object) -> int:
    """A decimal string with at most four decimals → int ten-thousandths of a unit."""
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "2" or "0.5", not a number')
    if not _QUANTITY.match(value):
        raise ValueError(
            "must be a decimal string with at most four decimals, between 0 and 9999999.9999"
        )
    whole, _, frac = value.partition(".")
    return int(whole) * 10_000 + int((frac + "0000")[:4])


def format_quantity(units: int) -> str:
    """int ten-thousandths → a decimal string without trailing zeros (``"1.5"``)."""
    text = str(Decimal(units) / Decimal(10_000))
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


Fen = Annotated[
    int,
    BeforeValidator(parse_fen),
    PlainSerializer(format_fen, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _MONEY.pattern,
            "examples": ["123.45"],
            "description": "Yuan as a decimal string, at most two decimals.",
        }
    ),
]
"""A money field: parsed from the contract's string to int fen, serialised back to a string."""

FenOut = Annotated[
    int,
    Field(ge=-MAX_FEN, le=MAX_FEN),
    PlainSerializer(format_fen, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^-?\d+\.\d{2}$",
            "examples": ["123.45"],
            "description": "Yuan as a decimal string with two decimals.",
        }
    ),
]
"""A money field of a response model (int fen inside, ``"123.45"`` on the wire)."""

Quantity = Annotated[
    int,
    BeforeValidator(parse_quantity),
    PlainSerializer(format_quantity, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _QUANTITY.pattern,
            "examples": ["2", "0.5"],
            "description": "A decimal string with at most four decimals.",
        }
    ),
]
"""A quantity field: int ten-thousandths of a unit inside, a decimal string outside."""
