"""Personal data at rest: AES-256-GCM per field, HMAC-SHA256 blind indexes for exact lookups.

Each encrypted value is ``version (2 bytes) | nonce (12 bytes) | ciphertext+tag``.
The nonce is fresh for every encryption. The associated data binds the value to
its table, column, row and key version, so a ciphertext copied to another row or
column fails to decrypt. Old key versions stay readable for rotation; new
writes use the current (highest) version.

Blind indexes use their own key (never the encryption key): ID numbers have low
entropy, so the index key is as secret as the data itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class FieldCryptoError(Exception):
    """A value could not be decrypted (wrong row, column, key or a corrupted blob)."""


class FieldCipher:
    """Encrypts and decrypts single field values bound to their place in the database."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise ValueError("at least one data key is required")
        for version, key in keys.items():
            if len(key) != 32 or not 0 < version < 65536:
                raise ValueError("data keys are 32 bytes with versions 1..65535")
        self._aead = {v: AESGCM(k) for v, k in keys.items()}
        self.current = max(keys)

    @staticmethod
    def _aad(table: str, column: str, row: str, version: int) -> bytes:
        return f"essc/v1|{table}|{column}|{row}|{version}".encode()

    def encrypt(self, plaintext: str, *, table: str, column: str, row: str) -> bytes:
        """Encrypt ``plaintext`` for ``table.column`` of row ``row`` with the current key."""
        nonce = os.urandom(12)
        version = self.current
        ct = self._aead[version].encrypt(
            nonce, plaintext.encode(), self._aad(table, column, row, version)
        )
        return version.to_bytes(2, "big") + nonce + ct

    def decrypt(self, blob: bytes, *, table: str, column: str, row: str) -> str:
        """The plaintext of ``blob``; :class:`FieldCryptoError` if it does not belong here."""
        if len(blob) < 2 + 12 + 16:
            raise FieldCryptoError("ciphertext too short")
        version = int.from_bytes(blob[:2], "big")
        aead = self._aead.get(version)
        if aead is None:
            raise FieldCryptoError("unknown data key version")
        try:
            plain = aead.decrypt(blob[2:14], blob[14:], self._aad(table, column, row, version))
        except Exception:
            raise FieldCryptoError("decryption failed") from None
        return plain.decode()

    def version_of(self, blob: bytes) -> int:
        """The key version a stored value was written with (for re-encryption jobs)."""
        return int.from_bytes(blob[:2], "big")


class BlindIndex:
    """Deterministic keyed digests for equality lookups of encrypted values."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the blind index key must be at least 32 bytes")
        self._key = key

    def digest(self, value: str, *, purpose: str) -> bytes:
        """32-byte HMAC-SHA256 of ``value`` under a purpose label (``id_number``, ``phone``)."""
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class DataKeys:
    """The data keys of one service: field encryption versions and the blind index key."""

    cipher: FieldCipher
    index: BlindIndex


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def load_data_keys(path: Path, *, create: bool) -> DataKeys:
    """Load ``path`` (``{"encryption": {"1": b64, ...}, "blind_index": b64}``).

    With ``create`` (development and test only) a missing file is generated with
    mode 0600. Production mounts the file from a Secret.
    """
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"data key file {path} is missing")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "encryption": {"1": _b64(secrets.token_bytes(32))},
            "blind_index": _b64(secrets.token_bytes(32)),
        }
        # A name of this process's own: replicas starting together each write a whole file
        # and the first link wins (one shared temporary name let one truncate another's).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        try:
            os.link(tmp, path)  # atomic, and never overwrites a file another process made
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    doc = json.loads(path.read_text())
    keys = {int(v): base64.b64decode(k) for v, k in doc["encryption"].items()}
    return DataKeys(FieldCipher(keys), BlindIndex(base64.b64decode(doc["blind_index"])))


def mask_name(name: str) -> str:
    """``张三丰`` → ``张**``; ``Li Lei`` → ``L*****``: the first character only."""
    return name[:1] + "*" * max(1, len(name) - 1)


def mask_id_number(id_number: str) -> str:
    """``360426199101010071`` → ``3604**********0071``."""
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def mask_phone(phone: str) -> str:
    """``13800138000`` → ``138****8000``."""
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_card_number(card_number: str) -> str:
    """``A12345678`` → ``A1*****78``."""
    return card_number[:2] + "*" * max(1, len(card_number) - 4) + card_number[-2:]
