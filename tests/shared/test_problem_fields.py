"""Field paths in validation problems."""

from __future__ import annotations

from shared.problems import format_loc


def test_format_loc() -> None:
    assert format_loc(("body", "items", 2, "unit_price")) == "items[2].unit_price"
    assert format_loc(("query", "limit")) == "limit"
    assert format_loc(("body",)) == "body"
