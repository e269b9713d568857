"""Upstream replicas: round-robin balancing, passive health and a circuit breaker per replica.

A replica that refuses connections or times out is counted; after
``failure_threshold`` consecutive failures its breaker opens for
``open_seconds`` and no request is sent to it. Then one trial request is let
through (half-open): success closes the breaker, failure opens it again. A 4xx
answer is a success here; it never opens a breaker. When every replica of an
upstream is open the gateway answers 503 at once instead of waiting on a dead
service.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import aiohttp


class BreakerState(IntEnum):
    """Values of ``essc_gateway_breaker_state`` (deploy/observability/metrics.yaml)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class Breaker:
    """Consecutive-failure circuit breaker of one replica."""

    failure_threshold: int = 5
    open_seconds: float = 5.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.open_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a request be sent now? In half-open state, only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def abandon(self) -> None:
        """The request ended with no verdict on the replica (the caller went away, or an error
        of ours): count nothing, but free the half-open trial slot, or no request would ever
        be let through again and a recovered replica would stay out of rotation."""
        self.trial_in_flight = False

    def failure(self) -> None:
        self.trial_in_flight = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()


@dataclass
class Replica:
    """One process of an upstream service."""

    base_url: str
    breaker: Breaker


@dataclass
class UpstreamPool:
    """All replicas of one upstream service, sharing one pooled aiohttp session."""

    name: str
    replicas: list[Replica]
    session: aiohttp.ClientSession
    _rr: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def create(
        cls,
        name: str,
        urls: list[str],
        session: aiohttp.ClientSession,
        *,
        failure_threshold: int,
        open_seconds: float,
    ) -> UpstreamPool:
        replicas = [Replica(u.rstrip("/"), Breaker(failure_threshold, open_seconds)) for u in urls]
        return cls(name, replicas, session)

    @property
    def base_url(self) -> str:
        """The first replica's URL (for readiness and JWKS of single-replica setups)."""
        return self.replicas[0].base_url

    def pick(self, exclude: set[int] | None = None) -> int | None:
        """Index of the next replica whose breaker admits a request, or None."""
        n = len(self.replicas)
        start = next(self._rr)
        for offset in range(n):
            i = (start + offset) % n
            if exclude and i in exclude:
                continue
            if self.replicas[i].breaker.allow():
                return i
        return None

    def failover_order(self) -> list[Replica]:
        """Every replica, those whose breaker is closed first (the gateway's own GETs:
        disabled clients, OpenAPI). Breakers are only read here."""
        return sorted(self.replicas, key=lambda r: r.breaker.state is not BreakerState.CLOSED)

    def state(self) -> BreakerState:
        """The pool's worst-case view: open only when every replica is open."""
        states = [r.breaker.state for r in self.replicas]
        if all(s is BreakerState.OPEN for s in states):
            return BreakerState.OPEN
        if any(s is not BreakerState.CLOSED for s in states):
            return BreakerState.HALF_OPEN
        return BreakerState.CLOSED


def split_urls(value: str) -> list[str]:
    """``"http://a:1, http://b:2"`` → two URLs (settings accept comma-separated replicas)."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
