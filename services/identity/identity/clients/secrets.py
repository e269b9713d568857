"""Sandbox client secrets: generated once, stored only as an scrypt hash (slow on purpose)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_R, _P, _DKLEN = 8, 1, 32


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def hash_secret(secret: str, *, n: int) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=_R, p=_P, dklen=_DKLEN, maxmem=2**26)
    b64 = base64.b64encode
    return f"scrypt${n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str | None, *, n: int) -> bool:
    """Constant-time check of ``secret`` against ``stored``; with no stored hash the same cost
    is spent on a dummy so that an unknown client id takes as long as a wrong secret."""
    if stored is None:
        hashlib.scrypt(
            secret.encode(), salt=b"\0" * 16, n=n, r=_R, p=_P, dklen=_DKLEN, maxmem=2**26
        )
        return False
    try:
        _, n_s, r_s, p_s, salt_b64, hash_b64 = stored.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            secret.encode(),
            salt=salt,
            n=int(n_s),
            r=int(r_s),
            p=int(p_s),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)
