"""The risk rules themselves: pure functions of a context and thresholds, each explained.

Each rule that fires contributes its score and a sentence an operator can check; the sum is
compared with the hold threshold by the caller. Amount statistics are per holder and per
hospital running mean and variance (Welford's online algorithm), so no history is re-read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from settlement.risk.geo import distance_km
from shared.money import format_fen


@dataclass(frozen=True, slots=True)
class Thresholds:
    hold_score: int
    travel_max_kmh: float
    travel_min_km: float
    travel_score: int
    daily_max: int
    daily_score: int
    holder_z: float
    holder_min_samples: int
    holder_score: int
    hospital_z: float
    hospital_min_samples: int
    hospital_score: int
    outlier_min_fen: int
    failures_max: int
    failures_window_minutes: int
    failures_score: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Running count, mean and M2 (sum of squared deviations) of amounts in fen."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @property
    def stdev(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


def welford(stats: Stats, x: float) -> Stats:
    """Add one observation (the same update the repository runs in SQL)."""
    n = stats.n + 1
    mean = stats.mean + (x - stats.mean) / n
    return Stats(n, mean, stats.m2 + (x - stats.mean) * (x - mean))


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules look at for one attempt."""

    amount_fen: int
    now: datetime
    treatment_region: str
    last_region: str | None
    last_at: datetime | None
    settled_today: int
    holder: Stats
    hospital: Stats
    recent_failures: int


@dataclass(frozen=True, slots=True)
class Hit:
    rule: str
    score: int
    reason: str


def _outlier(
    rule: str,
    who: str,
    amount: int,
    stats: Stats,
    z_max: float,
    min_n: int,
    score: int,
    min_fen: int,
) -> Hit | None:
    if stats.n < min_n or amount < min_fen or amount <= stats.mean:
        return None
    # A floor on the spread: identical past bills must not make every new amount "infinitely" odd.
    spread = max(stats.stdev, 0.25 * stats.mean, 100.0)
    z = (amount - stats.mean) / spread
    if z <= z_max:
        return None
    return Hit(
        rule,
        score,
        f"{format_fen(amount)} is {z:.1f} deviations above {who} mean of "
        f"{format_fen(round(stats.mean))} over {stats.n} settlements (limit {z_max:g}).",
    )


def evaluate(ctx: Context, th: Thresholds) -> list[Hit]:
    """Every rule that fires for ``ctx``, in a fixed order."""
    hits: list[Hit] = []
    if ctx.last_region is not None and ctx.last_at is not None:
        km = distance_km(ctx.last_region, ctx.treatment_region)
        if km is not None and km >= th.travel_min_km:
            hours = max((ctx.now - ctx.last_at).total_seconds(), 1.0) / 3600
            speed = km / hours
            if speed > th.travel_max_kmh:
                hits.append(
                    Hit(
                        "impossible_travel",
                        th.travel_score,
                        f"Settled in region {ctx.last_region} {hours * 60:.0f} min earlier, "
                        f"{km:.0f} km from {ctx.treatment_region}: {speed:.0f} km/h needed "
                        f"(limit {th.travel_max_kmh:g}).",
                    )
                )
    if ctx.settled_today + 1 > th.daily_max:
        hits.append(
            Hit(
                "daily_velocity",
                th.daily_score,
                f"This would be settlement {ctx.settled_today + 1} today for the holder "
                f"(limit {th.daily_max}).",
            )
        )
    for hit in (
        _outlier("holder_amount", "the holder's", ctx.amount_fen, ctx.holder, th.holder_z,
                 th.holder_min_samples, th.holder_score, th.outlier_min_fen),
        _outlier("hospital_amount", "the hospital's", ctx.amount_fen, ctx.hospital,
                 th.hospital_z, th.hospital_min_samples, th.hospital_score, th.outlier_min_fen),
    ):  # fmt: skip
        if hit is not None:
            hits.append(hit)
    if ctx.recent_failures >= th.failures_max:
        hits.append(
            Hit(
                "repeated_failures",
                th.failures_score,
                f"{ctx.recent_failures} stale, expired or held attempts for the holder in the "
                f"last {th.failures_window_minutes} min (limit {th.failures_max}).",
            )
        )
    return hits
