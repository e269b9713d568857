"""PIN rules and storage: six digits, no runs, no repeats, not from the ID number; scrypt.

scrypt (stdlib ``hashlib.scrypt``, N=2**14, r=8, p=1, 16 MiB) costs ~50 ms per hash on this
machine and runs on the service's KDF pool (``shared.kdf``: a few threads of its own, so a
burst of PINs neither blocks the event loop nor holds 16 MiB per default-executor thread).
A six-digit PIN has only 10**6 values, so the hash alone cannot stop an offline search: the
real defence is that the hashes stay in this database and that five wrong PINs lock payment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os

from issuance.errors import PinRejectedError
from shared.kdf import KdfPool

_R, _P = 8, 1


def check_pin_shape(pin: str, *, field: str = "pin") -> None:
    """Raise :class:`PinRejectedError` for anything but six digits that are not a run/repeat."""
    if len(pin) != 6 or not pin.isascii() or not pin.isdigit():
        raise PinRejectedError("The PIN must be exactly six digits.", field=field)
    digits = [int(c) for c in pin]
    steps = {b - a for a, b in itertools.pairwise(digits)}
    if steps == {0}:
        raise PinRejectedError("The PIN must not be one repeated digit.", field=field)
    if steps in ({1}, {-1}):
        raise PinRejectedError(
            "The PIN must not be an ascending or descending run of digits.", field=field
        )


def _hash(pin: str, salt: bytes, log2_n: int) -> bytes:
    return hashlib.scrypt(
        pin.encode(), salt=salt, n=2**log2_n, r=_R, p=_P, maxmem=256 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def hash_pin(pin: str, log2_n: int, kdf: KdfPool) -> str:
    """``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`` of ``pin`` (computed on ``kdf``'s threads)."""
    salt = os.urandom(16)
    digest = await kdf.run(_hash, pin, salt, log2_n)
    return f"scrypt${log2_n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


async def verify_pin(pin: str, stored: str, kdf: KdfPool) -> bool:
    """True if ``pin`` matches ``stored`` (constant-time comparison, on ``kdf``'s threads)."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or int(r) != _R or int(p) != _P:
            return False
        candidate = await kdf.run(_hash, pin, _unb64(salt), int(log2_n))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(digest))
