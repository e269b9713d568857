"""Fetching and caching another service's JWKS for asynchronous token verification.

This module owns the client side of key publication (security.md "Tokens"): fetch with an
async client (never pyjwt's blocking ``PyJWKClient``), cache for ``ttl`` seconds, share one
in-flight fetch between concurrent callers, rate-limit forced refreshes caused by unknown
kids, and keep the last good key set when the endpoint fails or returns garbage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from shared.tokens.keys import public_jwk

__all__ = ["JwksCache", "ec_public_key_from_jwk"]

logger = logging.getLogger(__name__)

_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COORD_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def ec_public_key_from_jwk(jwk: object) -> tuple[str, ec.EllipticCurvePublicKey] | None:
    """Return ``(kid, key)`` for a public EC P-256 signing JWK, or None if it is anything else.

    Refused: other key types or curves, ``alg`` other than ES256, ``use`` other than sig,
    private material (``d``), a missing or odd kid, coordinates that are not 32 bytes or not a
    point on the curve. Never raises.
    """
    if not isinstance(jwk, Mapping):
        return None
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        return None
    if jwk.get("alg", "ES256") != "ES256" or jwk.get("use", "sig") != "sig":
        return None
    kid, x, y = jwk.get("kid"), jwk.get("x"), jwk.get("y")
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
        return None
    if not (isinstance(x, str) and isinstance(y, str)):
        return None
    if not (_COORD_RE.fullmatch(x) and _COORD_RE.fullmatch(y)):
        return None
    try:
        xi = int.from_bytes(base64.urlsafe_b64decode(x + "="), "big")
        yi = int.from_bytes(base64.urlsafe_b64decode(y + "="), "big")
        key = ec.EllipticCurvePublicNumbers(xi, yi, ec.SECP256R1()).public_key()
    except (ValueError, binascii.Error):
        return None
    return kid, key


class _FetchError(Exception):
    pass


class JwksCache:
    """An ``AsyncKeySource`` backed by a remote JWKS document.

    Serves keys from the last good document while it is younger than ``ttl`` seconds; refreshes
    when stale. At most one fetch runs at a time (concurrent callers await it) and fetch
    attempts are spaced at least ``min_refresh_interval`` seconds apart, so a flood of unknown
    kids or a dead endpoint costs one request per interval. ``clock`` is monotonic seconds.

    ``url`` may be a list: every replica of the publisher serves the same document, so a
    fetch tries them in order and the first good answer wins (one dead replica, the first
    included, does not leave the cache without keys).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        client: httpx.AsyncClient,
        ttl: float = 300,
        min_refresh_interval: float = 10,
        timeout: float = 2.0,
        max_bytes: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._urls = [url] if isinstance(url, str) else list(url)
        if not self._urls:
            raise ValueError("JwksCache needs at least one URL")
        self._url = self._urls[0]
        self._client = client
        self._ttl = ttl
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._published: list[dict[str, str]] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self.fetch_count = 0

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._ttl

    async def get_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """Return the public key for ``kid`` or None; may fetch (see the class contract).

        Never raises for fetch problems: they are logged and the last good set is used.
        """
        if self._stale(self._clock()):
            await self.refresh()
        key = self._keys.get(kid)
        if key is None:
            await self.refresh(force=True)
            key = self._keys.get(kid)
        return key

    async def refresh(self, force: bool = False) -> bool:
        """Fetch the document if stale (or ``force``) and the rate limit allows.

        Joins a fetch already in flight. Returns True if the fetch it ran or joined succeeded,
        False if it was skipped or failed (the previous key set is then kept).
        """
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        now = self._clock()
        if not force and not self._stale(now):
            return False
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return False
        self._attempted_at = now
        task = asyncio.get_running_loop().create_task(self._fetch())
        self._inflight = task
        task.add_done_callback(self._fetch_done)
        # shield: a cancelled caller must not cancel the fetch the others are waiting for.
        return await asyncio.shield(task)

    def _fetch_done(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # mark retrieved even if every waiter was cancelled

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The last good key set, ``{"keys": [...]}`` of normalised public JWKs, to re-publish."""
        return {"keys": [dict(k) for k in self._published]}

    async def _fetch(self) -> bool:
        self.fetch_count += 1
        reasons: list[str] = []
        for url in self._urls:
            try:
                body = await self._download(url)
                keys = self._parse(body)
            except _FetchError as exc:
                reasons.append(f"{url}: {exc}")
            except TimeoutError:
                reasons.append(f"{url}: timed out")
            except httpx.HTTPError as exc:
                reasons.append(f"{url}: {type(exc).__name__}: {exc}")
            else:
                self._keys = keys
                self._published = [public_jwk(key, kid) for kid, key in keys.items()]
                self._fetched_at = self._clock()
                self._url = url
                return True
        logger.warning(
            "JWKS fetch failed (%s); keeping %d cached keys", "; ".join(reasons), len(self._keys)
        )
        return False

    async def _download(self, url: str) -> bytes:
        async with asyncio.timeout(self._timeout):
            async with self._client.stream(
                "GET",
                url,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(f"HTTP {response.status_code}")
                if response.headers.get("content-encoding", "identity") != "identity":
                    raise _FetchError("unexpected content encoding")
                declared = response.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > self._max_bytes:
                    raise _FetchError("document too large")
                body = bytearray()
                # identity encoding was checked above, so these are the bytes on the wire.
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _FetchError("document too large")
                return bytes(body)

    def _parse(self, body: bytes) -> dict[str, ec.EllipticCurvePublicKey]:
        try:
            doc: Any = json.loads(body)
        except (ValueError, RecursionError):
            raise _FetchError("invalid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise _FetchError("not a JWK set")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        skipped = 0
        for jwk in doc["keys"]:
            parsed = ec_public_key_from_jwk(jwk)
            if parsed is None or parsed[0] in keys:
                skipped += 1
                continue
            keys[parsed[0]] = parsed[1]
        if skipped:
            logger.warning("JWKS from %s: skipped %d unusable keys", self._url, skipped)
        if not keys:
            raise _FetchError("no usable ES256 keys")
        return keys
