"""Memory-hard hashing (scrypt) off the event loop, on a small pool of its own.

One scrypt with r=8 and N=2**14 holds 16 MiB while it runs. On asyncio's default executor
(``min(32, cores + 4)`` threads) a burst of PIN or client-secret checks runs that many at
once, and glibc keeps each thread's 16 MiB in that thread's arena afterwards: the soak
(``make soak``) saw issuance's RSS grow by 90 MiB on this 2-core machine (6 threads); on a
16-core node it would be 20 threads, over 300 MiB, whatever the pod's CPU limit. A pool of
its own bounds the memory (threads x 16 MiB) and does not oversubscribe the CPU with a
CPU-bound hash; other ``to_thread`` work keeps the default executor.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class KdfPool:
    """A fixed number of threads for key derivation; created by a service's start-up."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("a KDF pool needs at least one thread")
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kdf")

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the pool; at most ``threads`` run at once, others queue."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the threads once the queued work is done (the service's shutdown)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
