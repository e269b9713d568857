"""The demo cities' policies (``python -m settlement seed-demo``): distinct, plausible figures.

Shanghai's are the domain reference's (deductible 1,500; outpatient 65/60/50% at levels 1/2/3
under 45 and 75/70/60% from 45; inpatient 85%); the others are illustrative, in the ranges
cities publish (class-B first share 5–15%, deductibles lower at community hospitals, ratios
higher there and for older and retired holders).
"""

from __future__ import annotations

from typing import Any

Band = tuple[str, str, str]  # under 45, 45 and over, retired


def _policy(
    name: str,
    out_ded: tuple[str, str, str],
    in_ded: tuple[str, str, str],
    out_ratio: tuple[Band, Band, Band],
    in_ratio: tuple[Band, Band, Band],
    class_b: str,
    cap: str,
    account_may_pay: bool = True,
) -> dict[str, Any]:
    def levels(values: tuple[Any, Any, Any], each: Any) -> dict[str, Any]:
        return {f"level_{i + 1}": each(v) for i, v in enumerate(values)}

    def bands(b: Band) -> dict[str, str]:
        return {"under_45": b[0], "from_45": b[1], "retired": b[2]}

    return {
        "name": name,
        "deductible": {
            "outpatient": levels(out_ded, str),
            "inpatient": levels(in_ded, str),
        },
        "fund_ratio": {
            "outpatient": levels(out_ratio, bands),
            "inpatient": levels(in_ratio, bands),
        },
        "class_b_self_pay": class_b,
        "annual_cap": cap,
        "account_may_pay": account_may_pay,
    }


DEMO_POLICIES: dict[str, dict[str, Any]] = {
    "370200": _policy(
        "Qingdao employee medical insurance",
        ("800.00", "1000.00", "1200.00"),
        ("300.00", "600.00", "900.00"),
        (("0.75", "0.80", "0.85"), ("0.65", "0.70", "0.75"), ("0.55", "0.60", "0.65")),
        (("0.92", "0.92", "0.95"), ("0.88", "0.90", "0.92"), ("0.85", "0.87", "0.90")),
        "0.10",
        "400000.00",
    ),
    "331100": _policy(
        "Lishui employee medical insurance",
        ("600.00", "800.00", "1000.00"),
        ("300.00", "500.00", "800.00"),
        (("0.80", "0.85", "0.90"), ("0.70", "0.75", "0.80"), ("0.60", "0.65", "0.70")),
        (("0.90", "0.92", "0.94"), ("0.85", "0.88", "0.90"), ("0.80", "0.83", "0.86")),
        "0.05",
        "300000.00",
    ),
    "350100": _policy(
        "Fuzhou employee medical insurance",
        ("700.00", "900.00", "1100.00"),
        ("400.00", "700.00", "1000.00"),
        (("0.75", "0.80", "0.85"), ("0.65", "0.70", "0.75"), ("0.55", "0.60", "0.65")),
        (("0.90", "0.92", "0.94"), ("0.86", "0.88", "0.90"), ("0.82", "0.84", "0.88")),
        "0.08",
        "350000.00",
    ),
    "360500": _policy(
        "Xinyu employee medical insurance",
        ("500.00", "700.00", "900.00"),
        ("200.00", "500.00", "800.00"),
        (("0.70", "0.75", "0.80"), ("0.60", "0.65", "0.70"), ("0.50", "0.55", "0.60")),
        (("0.90", "0.90", "0.92"), ("0.85", "0.85", "0.88"), ("0.80", "0.80", "0.85")),
        "0.15",
        "200000.00",
    ),
    "440100": _policy(
        "Guangzhou employee medical insurance",
        ("500.00", "800.00", "1200.00"),
        ("500.00", "800.00", "1200.00"),
        (("0.80", "0.85", "0.90"), ("0.70", "0.75", "0.80"), ("0.60", "0.65", "0.70")),
        (("0.90", "0.92", "0.95"), ("0.85", "0.88", "0.91"), ("0.80", "0.83", "0.87")),
        "0.10",
        "600000.00",
    ),
    "450100": _policy(
        "Nanning employee medical insurance",
        ("600.00", "800.00", "1000.00"),
        ("300.00", "600.00", "900.00"),
        (("0.72", "0.78", "0.84"), ("0.62", "0.68", "0.74"), ("0.52", "0.58", "0.64")),
        (("0.90", "0.91", "0.93"), ("0.85", "0.86", "0.89"), ("0.78", "0.80", "0.84")),
        "0.12",
        "300000.00",
    ),
    "460100": _policy(
        "Haikou employee medical insurance",
        ("400.00", "600.00", "800.00"),
        ("200.00", "400.00", "700.00"),
        (("0.78", "0.82", "0.86"), ("0.68", "0.72", "0.76"), ("0.58", "0.62", "0.66")),
        (("0.91", "0.93", "0.95"), ("0.86", "0.88", "0.90"), ("0.81", "0.83", "0.86")),
        "0.10",
        "250000.00",
        account_may_pay=False,
    ),
    "510100": _policy(
        "Chengdu employee medical insurance",
        ("600.00", "900.00", "1200.00"),
        ("200.00", "500.00", "800.00"),
        (("0.80", "0.83", "0.88"), ("0.70", "0.73", "0.78"), ("0.60", "0.63", "0.68")),
        (("0.92", "0.94", "0.96"), ("0.88", "0.90", "0.92"), ("0.84", "0.86", "0.88")),
        "0.10",
        "450000.00",
    ),
    "310000": _policy(
        "Shanghai employee medical insurance",
        ("1500.00", "1500.00", "1500.00"),
        ("1500.00", "1500.00", "1500.00"),
        (("0.65", "0.75", "0.85"), ("0.60", "0.70", "0.80"), ("0.50", "0.60", "0.70")),
        (("0.85", "0.85", "0.92"), ("0.85", "0.85", "0.92"), ("0.85", "0.85", "0.92")),
        "0.10",
        "600000.00",
    ),
    "110000": _policy(
        "Beijing employee medical insurance",
        ("1800.00", "1800.00", "1800.00"),
        ("1300.00", "1300.00", "1300.00"),
        (("0.90", "0.90", "0.90"), ("0.70", "0.70", "0.85"), ("0.70", "0.70", "0.85")),
        (("0.90", "0.92", "0.95"), ("0.87", "0.90", "0.93"), ("0.85", "0.88", "0.91")),
        "0.10",
        "500000.00",
    ),
}
"""Ten demo cities: the eight of the launch article, Shanghai and Beijing."""
