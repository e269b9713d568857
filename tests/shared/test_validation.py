"""Clean strings and region codes at the edge."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from shared.validation import CleanStr, RegionCode, RequestModel, is_known_region, region_name


class Body(RequestModel):
    name: Annotated[CleanStr, Field(min_length=1, max_length=10)]
    region: RegionCode


def test_valid() -> None:
    body = Body(name="张三", region="370200")
    assert body.region == "370200"
    assert region_name("370200") == "青岛市"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "a\x00b", "region": "310000"}, "name"),
        ({"name": "a\x1bb", "region": "310000"}, "name"),
        ({"name": "x" * 11, "region": "310000"}, "name"),
        ({"name": "ok", "region": "999999"}, "region"),
        ({"name": "ok", "region": "31000"}, "region"),
        ({"name": "ok", "region": "310000", "extra": 1}, "extra"),
    ],
)
def test_invalid(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Body.model_validate(payload)
    assert info.value.errors()[0]["loc"] == (field,)


def test_known_regions() -> None:
    for code in (
        "310000",
        "110000",
        "370200",
        "331100",
        "350100",
        "360500",
        "440100",
        "450100",
        "460100",
        "510100",
    ):
        assert is_known_region(code), code
    assert not is_known_region("319999")
