"""ES256 (P-256) signing keys: identifiers, the in-memory key ring and its on-disk store.

This module owns key identity (``kid`` = RFC 7638 JWK thumbprint), key lifecycle
(``next`` → ``current`` → ``previous`` → dropped; RFC 8725 / security.md "Key rotation") and the
``keyring.json`` file format shared by every process that signs with the same keys.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "KID_PREFIX_LEN",
    "KeyNotFoundError",
    "KeyRing",
    "KeyState",
    "KeyStore",
    "KeyStoreError",
    "ManagedKey",
    "jwk_thumbprint",
    "public_jwk",
]

#: Length of the kid prefix carried by QR tokens; unique per purpose within a ring.
KID_PREFIX_LEN = 8
_PURPOSE_RE = re.compile(r"[a-z0-9_-]{1,32}")
_MAX_KEYRING_BYTES = 1 << 20


class KeyNotFoundError(LookupError):
    """No key in the ring fits the request (e.g. no ``current`` key for a purpose)."""


class KeyStoreError(Exception):
    """The key store file is missing, unreadable, unsafe or invalid."""


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _p256_xy(public_key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError(f"expected a P-256 key, got {public_key.curve.name}")
    point = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:33], point[33:65]


def jwk_thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the RFC 7638 SHA-256 JWK thumbprint of a P-256 key (43 base64url chars).

    Raises ValueError for a key on another curve. No side effects.
    """
    x, y = _p256_xy(public_key)
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{_b64u(x)}","y":"{_b64u(y)}"}}'
    return _b64u(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """Return the public JWK (kty, crv, x, y, kid, use=sig, alg=ES256) for publication.

    Raises ValueError for a key on another curve.
    """
    x, y = _p256_xy(public_key)
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(x),
        "y": _b64u(y),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    }


class KeyState(StrEnum):
    """Lifecycle state: ``next`` is published only, ``current`` signs, ``previous`` verifies."""

    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"


@dataclass(frozen=True)
class ManagedKey:
    """A P-256 private key with its identity and lifecycle state.

    Construction checks that ``kid`` is the key's RFC 7638 thumbprint, the curve is P-256 and
    the timestamps are timezone-aware; it raises ValueError otherwise.
    """

    kid: str
    purpose: str
    state: KeyState
    private_key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)
    created_at: datetime
    retires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            raise ValueError("private_key must be an EC private key")
        if not _PURPOSE_RE.fullmatch(self.purpose):
            raise ValueError(f"invalid key purpose {self.purpose!r}")
        object.__setattr__(self, "state", KeyState(self.state))
        if self.created_at.tzinfo is None or (
            self.retires_at is not None and self.retires_at.tzinfo is None
        ):
            raise ValueError("key timestamps must be timezone-aware")
        if jwk_thumbprint(self.public_key) != self.kid:
            raise ValueError("kid does not match the key's RFC 7638 thumbprint")

    @cached_property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the key."""
        return self.private_key.public_key()

    @classmethod
    def generate(
        cls, purpose: str, *, state: KeyState, now: datetime, retires_at: datetime | None = None
    ) -> ManagedKey:
        """Generate a fresh P-256 key (reads the OS random source; no other side effects)."""
        private_key = ec.generate_private_key(ec.SECP256R1())
        kid = jwk_thumbprint(private_key.public_key())
        return cls(kid, purpose, state, private_key, now, retires_at)


_STATE_ORDER = {KeyState.CURRENT: 0, KeyState.NEXT: 1, KeyState.PREVIOUS: 2}


class KeyRing:
    """Immutable set of managed keys with O(1) lookups for the verification hot path.

    Invariants checked at construction (ValueError otherwise): unique kids; per purpose at
    most one ``current`` and one ``next`` key; per purpose unique ``KID_PREFIX_LEN``-char kid
    prefixes. ``clock`` (unix seconds) decides when a ``previous`` key has retired.
    """

    __slots__ = ("_by_kid", "_by_prefix", "_clock", "_current", "_keys", "_public")

    def __init__(self, keys: Iterable[ManagedKey], *, clock: Callable[[], float] = time.time):
        self._keys = tuple(sorted(keys, key=lambda k: (k.purpose, _STATE_ORDER[k.state], k.kid)))
        self._clock = clock
        self._by_kid: dict[str, ManagedKey] = {}
        self._public: dict[str, tuple[ec.EllipticCurvePublicKey, float | None]] = {}
        self._by_prefix: dict[tuple[str, str], ManagedKey] = {}
        self._current: dict[str, ManagedKey] = {}
        nexts: set[str] = set()
        for key in self._keys:
            if key.kid in self._by_kid:
                raise ValueError(f"duplicate kid {key.kid}")
            prefix = (key.purpose, key.kid[:KID_PREFIX_LEN])
            if prefix in self._by_prefix:
                raise ValueError(f"kid prefix collision in purpose {key.purpose}")
            if key.state is KeyState.CURRENT:
                if key.purpose in self._current:
                    raise ValueError(f"two current keys for purpose {key.purpose}")
                self._current[key.purpose] = key
            elif key.state is KeyState.NEXT:
                if key.purpose in nexts:
                    raise ValueError(f"two next keys for purpose {key.purpose}")
                nexts.add(key.purpose)
            retires = (
                key.retires_at.timestamp()
                if key.state is KeyState.PREVIOUS and key.retires_at is not None
                else None
            )
            self._by_kid[key.kid] = key
            self._public[key.kid] = (key.public_key, retires)
            self._by_prefix[prefix] = key

    @property
    def keys(self) -> tuple[ManagedKey, ...]:
        """All keys, ordered by purpose, then current, next, previous."""
        return self._keys

    @property
    def purposes(self) -> frozenset[str]:
        """Every purpose that has at least one key."""
        return frozenset(k.purpose for k in self._keys)

    def _retired(self, retires: float | None, now: float | None) -> bool:
        return retires is not None and (self._clock() if now is None else now) >= retires

    def signing_key(self, purpose: str) -> ManagedKey:
        """Return the ``current`` key of ``purpose``; raises KeyNotFoundError if there is none."""
        try:
            return self._current[purpose]
        except KeyError:
            raise KeyNotFoundError(f"no current key for purpose {purpose!r}") from None

    def public_key(self, kid: str, *, now: float | None = None) -> ec.EllipticCurvePublicKey | None:
        """Return the public key for ``kid`` (any purpose and state), or None.

        A ``previous`` key whose ``retires_at`` has passed (at ``now``, unix seconds, default
        the ring's clock) is treated as absent. O(1).
        """
        entry = self._public.get(kid)
        if entry is None or self._retired(entry[1], now):
            return None
        return entry[0]

    def key_by_kid(self, kid: str) -> ManagedKey | None:
        """Return the managed key with this kid regardless of state or retirement, or None."""
        return self._by_kid.get(kid)

    def key_by_kid_prefix(
        self, purpose: str, prefix: str, *, now: float | None = None
    ) -> ManagedKey | None:
        """Return the non-retired key of ``purpose`` whose kid starts with ``prefix``, or None.

        Only prefixes of exactly ``KID_PREFIX_LEN`` characters can match. O(1).
        """
        key = self._by_prefix.get((purpose, prefix))
        if key is None or self._retired(self._public[key.kid][1], now):
            return None
        return key

    def jwks(
        self, purposes: Iterable[str] | None = None, *, now: float | None = None
    ) -> dict[str, list[dict[str, str]]]:
        """Return ``{"keys": [...]}``: public JWKs of next, current and unretired previous keys."""
        wanted = None if purposes is None else frozenset(purposes)
        return {
            "keys": [
                public_jwk(k.public_key, k.kid)
                for k in self._keys
                if (wanted is None or k.purpose in wanted)
                and not self._retired(self._public[k.kid][1], now)
            ]
        }

    def rotated(self, purpose: str, *, now: datetime, retain: timedelta) -> KeyRing:
        """Return a new ring with ``purpose`` rotated; this ring is unchanged.

        next → current, current → previous (``retires_at = now + retain``), a fresh next key is
        generated and previous keys already retired at ``now`` are dropped. If there was no next
        key the new current key is fresh (it was never published ahead: avoid that in
        production). ``retain`` should be the longest token lifetime plus the JWKS cache period.
        Raises KeyNotFoundError if the purpose has no keys, ValueError for a negative retain.
        """
        if retain < timedelta(0):
            raise ValueError("retain must not be negative")
        mine = [k for k in self._keys if k.purpose == purpose]
        if not mine:
            raise KeyNotFoundError(f"no keys for purpose {purpose!r}")
        kept = [k for k in self._keys if k.purpose != purpose]
        taken = {k.kid[:KID_PREFIX_LEN] for k in mine}
        new_current: ManagedKey | None = None
        for key in mine:
            if key.state is KeyState.PREVIOUS:
                if key.retires_at is None or key.retires_at > now:
                    kept.append(key)
            elif key.state is KeyState.CURRENT:
                kept.append(replace(key, state=KeyState.PREVIOUS, retires_at=now + retain))
            else:
                new_current = replace(key, state=KeyState.CURRENT, retires_at=None)
        if new_current is None:
            new_current = _fresh_key(purpose, KeyState.CURRENT, now, taken)
        kept.append(new_current)
        kept.append(_fresh_key(purpose, KeyState.NEXT, now, taken))
        return KeyRing(kept, clock=self._clock)

    def with_purposes(self, purposes: Iterable[str], *, now: datetime) -> KeyRing:
        """Return a ring where every purpose has a current and a next key (generated if absent)."""
        keys = list(self._keys)
        for purpose in sorted(set(purposes)):
            mine = [k for k in keys if k.purpose == purpose]
            taken = {k.kid[:KID_PREFIX_LEN] for k in mine}
            states = {k.state for k in mine}
            for state in (KeyState.CURRENT, KeyState.NEXT):
                if state not in states:
                    keys.append(_fresh_key(purpose, state, now, taken))
        return KeyRing(keys, clock=self._clock)

    @classmethod
    def generate(
        cls, purposes: Iterable[str], now: datetime, *, clock: Callable[[], float] = time.time
    ) -> KeyRing:
        """Generate a ring with one current and one next key per purpose."""
        return cls((), clock=clock).with_purposes(purposes, now=now)


def _fresh_key(purpose: str, state: KeyState, now: datetime, taken: set[str]) -> ManagedKey:
    """Generate a key whose kid prefix is not in ``taken`` (and add it there)."""
    while True:
        key = ManagedKey.generate(purpose, state=state, now=now)
        prefix = key.kid[:KID_PREFIX_LEN]
        if prefix not in taken:
            taken.add(prefix)
            return key


# --- persistence -------------------------------------------------------------------------

_FORMAT = "essc-keyring/1"


def _key_to_record(key: ManagedKey) -> dict[str, Any]:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "purpose": key.purpose,
        "kid": key.kid,
        "state": key.state.value,
        "created_at": key.created_at.isoformat(),
        "retires_at": None if key.retires_at is None else key.retires_at.isoformat(),
        "private_key_pem": pem.decode("ascii"),
    }


def _key_from_record(record: Any, index: int) -> ManagedKey:
    where = f"key #{index}"
    if not isinstance(record, dict):
        raise KeyStoreError(f"{where}: not an object")
    try:
        purpose, kid, state = record["purpose"], record["kid"], record["state"]
        created_raw, retires_raw = record["created_at"], record.get("retires_at")
        pem = record["private_key_pem"]
    except KeyError as exc:
        raise KeyStoreError(f"{where}: missing field {exc.args[0]!r}") from None
    if not all(isinstance(v, str) for v in (purpose, kid, state, created_raw, pem)):
        raise KeyStoreError(f"{where}: purpose, kid, state, created_at, key must be strings")
    where = f"key {kid!r}"
    try:
        private_key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise KeyStoreError(f"{where}: unreadable PKCS#8 PEM ({exc})") from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise KeyStoreError(f"{where}: not an EC private key")
    try:
        created_at = datetime.fromisoformat(created_raw)
        retires_at = None if retires_raw is None else datetime.fromisoformat(retires_raw)
        return ManagedKey(kid, purpose, KeyState(state), private_key, created_at, retires_at)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(f"{where}: {exc}") from None


class KeyStore:
    """A key ring persisted as ``<directory>/keyring.json`` (mode 0600, directory 0700).

    Several processes may share the directory: writes are atomic (temp file + ``os.replace``),
    read-modify-write operations (``ensure``, ``rotate``) hold an exclusive ``flock`` and
    ``reload_if_changed`` lets readers pick up a rotation without restarting. Private keys are
    stored as unencrypted PKCS#8 PEM: protect the directory like any secret.
    """

    FILENAME = "keyring.json"

    def __init__(
        self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ):
        self._dir = Path(directory)
        self._path = self._dir / self.FILENAME
        self._clock = clock
        self._seen: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        """The key ring file."""
        return self._path

    def load(self) -> KeyRing:
        """Read and validate the key ring file.

        Raises KeyStoreError if the file is missing, group/world accessible, too large, not the
        expected JSON, holds a key whose kid is not its thumbprint, or breaks a ring invariant.
        Remembers the file's identity for ``reload_if_changed``.
        """
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise KeyStoreError(f"cannot open {self._path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_mode & 0o077:
                raise KeyStoreError(
                    f"{self._path} is accessible by group/others (mode {st.st_mode & 0o777:o});"
                    " it must be 0600"
                )
            raw = fh.read(_MAX_KEYRING_BYTES + 1)
        if len(raw) > _MAX_KEYRING_BYTES:
            raise KeyStoreError(f"{self._path} is larger than {_MAX_KEYRING_BYTES} bytes")
        ring = self._parse(raw)
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        return ring

    def _parse(self, raw: bytes) -> KeyRing:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise KeyStoreError(f"{self._path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise KeyStoreError(f"{self._path}: expected an object with format {_FORMAT!r}")
        records = doc.get("keys")
        if not isinstance(records, list):
            raise KeyStoreError(f"{self._path}: 'keys' must be a list")
        keys = [_key_from_record(r, i) for i, r in enumerate(records)]
        try:
            return KeyRing(keys, clock=self._clock)
        except ValueError as exc:
            raise KeyStoreError(f"{self._path}: {exc}") from None

    def save(self, ring: KeyRing) -> None:
        """Atomically replace the key ring file with ``ring`` (creating the directory 0700)."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"format": _FORMAT, "keys": [_key_to_record(k) for k in ring.keys]}
        data = json.dumps(doc, indent=2).encode("ascii")
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".keyring.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        st = os.stat(self._path)
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._dir / ".keyring.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def ensure(self, purposes: Iterable[str], *, now: datetime | None = None) -> KeyRing:
        """Load the ring (or start an empty one), give every purpose a current and next key.

        Writes the file only if something was added. Holds the store's exclusive lock so that
        processes starting together agree on one set of keys. Raises KeyStoreError for an
        existing but invalid file (it is never overwritten).
        """
        with self._locked():
            ring = self.load() if self._path.exists() else KeyRing((), clock=self._clock)
            when = now if now is not None else datetime.fromtimestamp(self._clock(), tz=UTC)
            updated = ring.with_purposes(purposes, now=when)
            if len(updated.keys) != len(ring.keys):
                self.save(updated)
            return updated

    def rotate(self, purpose: str, *, now: datetime, retain: timedelta) -> KeyRing:
        """Rotate ``purpose`` in the stored ring under the lock (see ``KeyRing.rotated``)."""
        with self._locked():
            ring = self.load().rotated(purpose, now=now, retain=retain)
            self.save(ring)
            return ring

    def reload_if_changed(self) -> KeyRing | None:
        """Return the freshly loaded ring if the file changed since the last load/save, else None.

        Change is detected by inode, mtime_ns and size. A missing file returns None; an
        invalid one raises KeyStoreError (keep using the ring you have).
        """
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        if (st.st_ino, st.st_mtime_ns, st.st_size) == self._seen:
            return None
        return self.load()
