"""Fetching a client's ``jwks_uri`` under the SSRF rules (security.md, "Client authentication").

https only; no redirects; every address the name resolves to must be public
(no private, loopback, link-local, multicast, reserved or unspecified address) and
the connection goes to exactly those vetted addresses (a resolver that refuses,
so a DNS answer cannot change between the check and the connect); the body is
bounded in size and the whole fetch in time. ``allow_insecure`` (tests only)
admits plain http and loopback addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver


class JwksFetchError(Exception):
    """The URI is not allowed or the fetch failed; ``reason`` is safe to show to ops."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_allowed(ip: IpAddress, *, allow_loopback: bool = False) -> bool:
    """True for a globally routable unicast address (loopback only if allowed)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return not (
        ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


class VettingResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses if any address is not public."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if not address_allowed(
                ipaddress.ip_address(r["host"]), allow_loopback=self._allow_loopback
            ):
                raise JwksFetchError("the jwks_uri host resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_uri(uri: str, *, allow_insecure: bool) -> None:
    """Refuse a URI that may never be fetched (scheme, credentials, literal private address)."""
    parts = urlsplit(uri)
    schemes = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in schemes:
        raise JwksFetchError("jwks_uri must be an https URL")
    if not parts.hostname or parts.username or parts.password:
        raise JwksFetchError("jwks_uri must name a host and carry no credentials")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    if not address_allowed(literal, allow_loopback=allow_insecure):
        raise JwksFetchError("jwks_uri must not point to a non-public address")


class JwksFetcher:
    """One-shot fetches of client JWKS documents with the rules above."""

    def __init__(self, *, allow_insecure: bool, timeout: float, max_bytes: int) -> None:
        self.allow_insecure = allow_insecure
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def fetch(self, uri: str) -> dict[str, Any]:
        """The JSON object at ``uri``; :class:`JwksFetchError` on any refusal or failure."""
        check_uri(uri, allow_insecure=self.allow_insecure)
        connector = aiohttp.TCPConnector(
            resolver=VettingResolver(allow_loopback=self.allow_insecure),
            use_dns_cache=False,
            limit=1,
        )
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                async with asyncio.timeout(self.timeout):
                    async with session.get(
                        uri,
                        allow_redirects=False,
                        headers={"Accept": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=self.timeout),
                    ) as resp:
                        if resp.status != 200:
                            raise JwksFetchError(f"jwks_uri answered HTTP {resp.status}")
                        raw = await resp.content.read(self.max_bytes + 1)
        except JwksFetchError:
            raise
        except TimeoutError:
            raise JwksFetchError("jwks_uri did not answer in time") from None
        except aiohttp.ClientConnectorError as exc:
            inner = exc.__cause__ or exc.__context__
            if isinstance(inner, JwksFetchError):
                raise inner from None
            raise JwksFetchError("jwks_uri is unreachable") from None
        except (aiohttp.ClientError, OSError):
            raise JwksFetchError("jwks_uri is unreachable") from None
        if len(raw) > self.max_bytes:
            raise JwksFetchError("jwks_uri answered a document that is too large")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise JwksFetchError("jwks_uri did not answer JSON") from None
        if not isinstance(doc, dict):
            raise JwksFetchError("jwks_uri did not answer a JWKS object")
        return doc
