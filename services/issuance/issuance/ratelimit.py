"""The per-e-card cap on QR issuance (security.md "Resource consumption").

``limits`` with a sliding-window counter (O(1) per hit, unlike a moving window whose
log grows with the limit); Redis storage (shared by every replica) when
``ISSUANCE_REDIS_URL`` is set, which a multi-replica deployment needs, in-process memory
otherwise. A limiter that cannot reach Redis lets the request through and logs: the QR's
single use and short life are the real protection, the cap is a brake on abuse.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

logger = logging.getLogger("issuance.ratelimit")


class QrRateLimiter:
    """``hit(key)`` → seconds to wait (0 when allowed)."""

    def __init__(self, rate: str, redis_url: str | None) -> None:
        self.item = parse(rate)
        storage: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            found = storage_from_string(uri)
            if not isinstance(found, Storage):
                raise ValueError(f"{redis_url!r} is not an async rate-limit storage")
            storage = found
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    async def hit(self, key: str) -> int:
        """Count one QR for ``key``; the Retry-After seconds if over the cap, else 0."""
        try:
            if await self.limiter.hit(self.item, "qr", key):
                return 0
            stats = await self.limiter.get_window_stats(self.item, "qr", key)
        except Exception as exc:  # storage down: fail open (see module docstring)
            logger.warning("rate limiter unavailable: %s", type(exc).__name__)
            return 0
        return max(1, math.ceil(stats.reset_time - time.time()))
