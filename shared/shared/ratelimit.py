"""Rate limits keyed by a verified identity: the ``limits`` library, Redis shared by replicas.

With a Redis URL every replica counts in the same store (``async+redis://`` through
coredis); without one each process counts in memory (development, tests). A limit
that is exceeded raises :class:`shared.problems.RateLimitedError` (429 with
``Retry-After`` in whole seconds). Keys must never hold personal data in clear:
callers pass an opaque id (a client id, or a blind index in hex).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from shared.problems import RateLimitedError


def _storage(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    url = redis_url
    if url.startswith(("redis://", "rediss://")):
        url = "async+" + url
    return RedisStorage(url)


class RateLimiter:
    """Named sliding-window-counter limits (``"verify-client": "60/minute"``).

    Sliding window counters rather than moving windows: the memory storage's moving
    window keeps every hit and sweeps each key through a worker thread, which cost
    milliseconds per request with one key per ID number.
    """

    def __init__(self, rules: dict[str, str], *, redis_url: str | None = None) -> None:
        self.rules: dict[str, RateLimitItem] = {name: parse(spec) for name, spec in rules.items()}
        self.storage = _storage(redis_url)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)

    async def hit(self, rule: str, key: str) -> None:
        """Count one hit of ``key`` under ``rule``; 429 problem if the limit is exceeded."""
        item = self.rules[rule]
        if await self.strategy.hit(item, rule, key):
            return
        stats = await self.strategy.get_window_stats(item, rule, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(retry_after)

    async def reset(self) -> None:
        """Forget every count (tests)."""
        await self.storage.reset()

    async def ping(self) -> bool:
        """True if the storage answers (readiness)."""
        try:
            return bool(await self.storage.check())
        except Exception:
            return False
