"""Where a region code is: the demo cities exactly, any other code by its province's capital."""

from __future__ import annotations

import math

# (latitude, longitude) of the ten demo cities.
CITIES: dict[str, tuple[float, float]] = {
    "370200": (36.07, 120.38),  # Qingdao
    "331100": (28.47, 119.92),  # Lishui
    "350100": (26.07, 119.30),  # Fuzhou
    "360500": (27.82, 114.92),  # Xinyu
    "440100": (23.13, 113.26),  # Guangzhou
    "450100": (22.82, 108.37),  # Nanning
    "460100": (20.04, 110.20),  # Haikou
    "510100": (30.57, 104.07),  # Chengdu
    "310000": (31.23, 121.47),  # Shanghai
    "110000": (39.90, 116.40),  # Beijing
}

# Province-level capitals by the first two digits of a GB/T 2260 code.
PROVINCES: dict[str, tuple[float, float]] = {
    "11": (39.90, 116.40), "12": (39.13, 117.20), "13": (38.04, 114.51), "14": (37.87, 112.55),
    "15": (40.84, 111.75), "21": (41.80, 123.43), "22": (43.82, 125.32), "23": (45.80, 126.53),
    "31": (31.23, 121.47), "32": (32.06, 118.80), "33": (30.27, 120.16), "34": (31.82, 117.23),
    "35": (26.07, 119.30), "36": (28.68, 115.86), "37": (36.65, 117.12), "41": (34.75, 113.62),
    "42": (30.59, 114.31), "43": (28.23, 112.94), "44": (23.13, 113.26), "45": (22.82, 108.37),
    "46": (20.04, 110.20), "50": (29.56, 106.55), "51": (30.57, 104.07), "52": (26.65, 106.63),
    "53": (25.04, 102.71), "54": (29.65, 91.17), "61": (34.34, 108.94), "62": (36.06, 103.83),
    "63": (36.62, 101.78), "64": (38.49, 106.23), "65": (43.83, 87.62), "71": (25.03, 121.57),
    "81": (22.32, 114.17), "82": (22.20, 113.54),
}  # fmt: skip


def locate(region_code: str) -> tuple[float, float] | None:
    """Coordinates of a region: the city itself, its prefecture, else its province's capital."""
    return (
        CITIES.get(region_code)
        or CITIES.get(region_code[:4] + "00")
        or PROVINCES.get(region_code[:2])
    )


def distance_km(a: str, b: str) -> float | None:
    """Great-circle distance between two regions (None if either is unknown).

    Two codes resolved to the same point (e.g. two counties of one province outside the demo
    cities) are 0 km apart: the rule then stays silent rather than guess.
    """
    pa, pb = locate(a), locate(b)
    if pa is None or pb is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*pa, *pb))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))
