"""Field types every request model uses: strings without NUL or control characters, region codes.

PostgreSQL refuses ``\\x00`` inside text and control characters have no place in
names or codes, so they are rejected at the edge with a 422 naming the field,
never passed on to become a 500. Every string is bounded.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CLEAN_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""The same rule as a JSON Schema pattern, for the documents (a field's own pattern wins)."""
_REGION = re.compile(r"^\d{6}$")


def no_control_chars(value: str) -> str:
    """Refuse NUL and other control characters (tab, CR and LF are allowed)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain NUL or control characters")
    return value


class _DocumentClean:
    """Say in the JSON Schema what :func:`no_control_chars` enforces."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if schema.get("type") == "string":
            schema.setdefault("pattern", CLEAN_PATTERN)
        return schema


CleanStr = Annotated[str, AfterValidator(no_control_chars), _DocumentClean]
"""A string without NUL or control characters; bound it with ``Field(max_length=...)``."""

ShortText = Annotated[CleanStr, Field(min_length=1, max_length=128)]
"""A required, bounded, clean string for names of things, codes and references."""


@lru_cache(maxsize=8192)
def is_known_region(code: str) -> bool:
    """True if ``code`` is a 6-digit GB/T 2260 administrative region python-stdnum knows."""
    if not _REGION.match(code):
        return False
    info = _region_db().info(code)
    return len(info) == 2 and all(props for _, props in info)


@lru_cache(maxsize=1)
def _region_db() -> Any:
    from stdnum import numdb  # the GB/T 2260 table python-stdnum ships (cn/loc.dat)

    return numdb.get("cn/loc")


def region_name(code: str) -> str | None:
    """The (county-level) name of a known region code, e.g. ``青岛市`` for 370200."""
    if not is_known_region(code):
        return None
    name = str(_region_db().info(code)[1][1].get("county", ""))
    return re.sub(r"^\[[^\]]*\]", "", name) or None


def check_region(value: str) -> str:
    if not is_known_region(value):
        raise ValueError("must be a known 6-digit administrative region code (GB/T 2260)")
    return value


RegionCode = Annotated[
    str,
    Field(min_length=6, max_length=6, pattern=r"^\d{6}$", examples=["310000"]),
    AfterValidator(check_region),
]
"""A GB/T 2260 region code such as ``310000`` (Shanghai) or ``370200`` (Qingdao)."""


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_iso_date(value: object) -> object:
    """``YYYY-MM-DD`` only (lax parsing would also take ``0`` or a timestamp as a date)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return date.fromisoformat(value)


IsoDate = Annotated[date, BeforeValidator(parse_iso_date)]
"""A calendar date as the contract writes it (``2026-11-27``), in a body or a query."""

ID_PATTERN = r"^[A-Za-z0-9_-]+$"

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
"""An opaque id in a path (``ec_…``, ``s_…``, ``al_…``): 1–64 URL-safe characters.

Anything else (a 10 KB id, a NUL, a slash-encoded fragment) is a 422 naming the
parameter before it reaches a query; a well-formed id that does not exist is the
service's own 404.
"""


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (422), types are strict.

    Strict: a JSON value must have the documented type — ``"3"`` is no integer, ``"yes"``
    or ``1`` no boolean, ``1.0`` no integer. Enumerations written as strings mark their
    field ``Field(strict=False)`` (exact values only either way); dates use
    :data:`IsoDate`.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)
