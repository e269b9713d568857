"""Validation of a holder's personal data: citizen ID numbers, names, phones, card numbers.

ID numbers follow GB 11643 and are checked with ``stdnum.cn.ric`` (check character,
birth date and region). Messages never quote the value.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumError

_NAME = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fffA-Za-z·・\u00b7 ]{1,30}$")
_PHONE = re.compile(r"^1[3-9]\d{9}$")
_CARD = re.compile(r"^[A-Z0-9]{9}$")


_ID = re.compile(r"^\d{17}[\dX]$")


@lru_cache(maxsize=65_536)
def _place_known(prefix: str, year: int) -> bool:
    """Was region ``prefix`` assigned in ``year``? (stdnum's rule; cached: bulk loads repeat it)."""
    probe = f"{prefix}{year}0101001"
    try:
        ric.get_birth_place(probe + ric.calc_check_digit(probe + "0"))
    except StdnumError:
        return False
    return True


def check_id_number(value: str) -> str:
    """A valid 18-character citizen ID number (upper-case X), or ValueError.

    The same checks as ``stdnum.cn.ric.validate`` (format, birth date, check
    character, region assigned in the birth year), with the region lookup cached.
    """
    number = value.upper() if isinstance(value, str) else ""
    if not _ID.match(number):
        raise ValueError("must be an 18-character citizen ID number")
    try:
        born = ric.get_birth_date(number)
        valid = ric.calc_check_digit(number) == number[-1] and _place_known(number[:6], born.year)
    except StdnumError:
        valid = False
    if not valid:
        raise ValueError("must be a valid citizen ID number (check character, birth date, region)")
    return number


def check_name(value: str) -> str:
    """1–30 characters: CJK or Latin letters, the middle dot and spaces."""
    if not _NAME.match(value) or not value.strip() or value != value.strip():
        raise ValueError("must be 1 to 30 Chinese or Latin letters, middle dots or inner spaces")
    return value


def check_phone(value: str) -> str:
    """A mainland mobile number (11 digits starting 13–19)."""
    if not _PHONE.match(value):
        raise ValueError("must be a mainland mobile number of 11 digits")
    return value


def check_card_number(value: str) -> str:
    """Nine upper-case letters or digits (the exact national format is uncertain)."""
    if not _CARD.match(value):
        raise ValueError("must be 9 upper-case letters or digits")
    return value


IdNumber = Annotated[
    str,
    Field(min_length=18, max_length=18, examples=["360426199101010071"]),
    AfterValidator(check_id_number),
]
PersonName = Annotated[
    str, Field(min_length=1, max_length=30, examples=["张三"]), AfterValidator(check_name)
]
Phone = Annotated[
    str, Field(min_length=11, max_length=11, examples=["13800138000"]), AfterValidator(check_phone)
]
CardNumber = Annotated[
    str,
    Field(min_length=9, max_length=9, examples=["A12345678"]),
    AfterValidator(check_card_number),
]


def birth_date_of(id_number: str) -> date:
    """The birth date encoded in a valid ID number."""
    born: date = ric.get_birth_date(id_number)
    return born


def gender_of(id_number: str) -> Literal["male", "female"]:
    """GB 11643: an odd sequence digit (17th character) is male."""
    return "male" if int(id_number[16]) % 2 else "female"
