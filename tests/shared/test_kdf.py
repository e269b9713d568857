"""shared.kdf: scrypt on a bounded pool of its own (the soak's issuance RSS finding).

The soak saw issuance's RSS grow by 90 MiB during a burst of PIN operations: each scrypt
holds 16 MiB, the default executor ran six at once on this 2-core machine, and glibc keeps
each thread's memory. These tests pin the fix: never more than ``threads`` hashes at once,
the RSS of a burst bounded by the pool (measured in fresh processes against the default
executor's), and PINs hashed and checked on the service's pool.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from issuance.ecards import pin as pins
from shared.kdf import KdfPool


def test_runs_off_the_loop_never_more_than_its_threads_at_once() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(x: int, *, times: int) -> tuple[int, str]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return x * times, threading.current_thread().name

    async def burst() -> list[tuple[int, str]]:
        pool = KdfPool(2)
        try:
            return await asyncio.gather(*(pool.run(work, i, times=3) for i in range(10)))
        finally:
            pool.close()

    results = asyncio.run(burst())
    assert [r for r, _ in results] == [i * 3 for i in range(10)]
    assert peak[0] == 2
    assert {name.split("_")[0] for _, name in results} == {"kdf"}
    with pytest.raises(ValueError, match="at least one thread"):
        KdfPool(0)


BURST = """
import asyncio, hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
from shared.kdf import KdfPool

def rss():
    with open(f"/proc/{os.getpid()}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

def scrypt(i):  # half the PIN's cost: 8 MiB each
    return hashlib.scrypt(b"135790", salt=os.urandom(16), n=2**13, r=8, p=1,
                          maxmem=64 * 1024 * 1024, dklen=32)

async def main(mode):
    loop = asyncio.get_running_loop()
    # The default executor of a 2-core machine: min(32, cores + 4) threads.
    loop.set_default_executor(ThreadPoolExecutor(6))
    pool = KdfPool(2)
    before = rss()
    # Two bursts: glibc returns the first mmap'd buffers, then raises its mmap threshold and
    # serves the next ones from the threads' arenas, which keep them.
    for _ in range(2):
        if mode == "pool":
            await asyncio.gather(*(pool.run(scrypt, i) for i in range(6)))
        else:
            await asyncio.gather(*(asyncio.to_thread(scrypt, i) for i in range(6)))
    print(rss() - before)
    pool.close()

asyncio.run(main(sys.argv[1]))
"""


def _growth_kib(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", BURST, mode], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


def test_a_burst_of_hashes_grows_rss_by_the_pool_not_the_default_executor() -> None:
    pooled, default = _growth_kib("pool"), _growth_kib("default")
    mib = 1024
    assert pooled <= 2 * 8 * mib + 8 * mib, pooled  # two hashes' buffers, plus slack
    assert default >= pooled + 16 * mib, (default, pooled)  # what the soak saw, and the gain


def test_pins_are_hashed_and_checked_on_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = pins._hash

    def spy(pin: str, salt: bytes, log2_n: int) -> bytes:
        threads.append(threading.current_thread().name)
        return real(pin, salt, log2_n)

    monkeypatch.setattr(pins, "_hash", spy)

    async def round_trip() -> tuple[bool, bool]:
        pool = KdfPool(1)
        try:
            stored = await pins.hash_pin("135790", 10, pool)
            return await pins.verify_pin("135790", stored, pool), await pins.verify_pin(
                "246802", stored, pool
            )
        finally:
            pool.close()

    assert asyncio.run(round_trip()) == (True, False)
    assert len(threads) == 3
    assert all(name.startswith("kdf") for name in threads)
