"""Where a holder's personal data is encrypted and indexed: one place for table/column names.

Ciphertexts are bound to ``holder.<column>`` of the holder's ``holder_ref``; blind
indexes use the purpose labels below, so an ID number's index never equals a phone's.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from shared.fieldcrypto import DataKeys

TABLE = "holder"


def new_holder_ref() -> str:
    """A random, opaque holder reference (never derived from the ID number)."""
    return "h" + secrets.token_hex(12)


def new_card_ref() -> str:
    """A random, opaque physical-card reference."""
    return "c" + secrets.token_hex(12)


def id_index(keys: DataKeys, id_number: str) -> bytes:
    return keys.index.digest(id_number.upper(), purpose="id_number")


def phone_index(keys: DataKeys, phone: str) -> bytes:
    return keys.index.digest(phone, purpose="phone")


def id_number_sha256(id_number: str) -> str:
    """What a face attestation names: hex SHA-256 of the upper-case ID number."""
    return hashlib.sha256(id_number.upper().encode()).hexdigest()


@dataclass(frozen=True)
class SealedHolder:
    """The stored form of a holder's personal data."""

    id_number_enc: bytes
    id_number_bidx: bytes
    name_enc: bytes
    phone_enc: bytes
    phone_bidx: bytes


def seal(keys: DataKeys, holder_ref: str, *, id_number: str, name: str, phone: str) -> SealedHolder:
    """Encrypt and index one holder's ID number, name and phone."""
    c = keys.cipher
    return SealedHolder(
        id_number_enc=c.encrypt(id_number, table=TABLE, column="id_number", row=holder_ref),
        id_number_bidx=id_index(keys, id_number),
        name_enc=c.encrypt(name, table=TABLE, column="name", row=holder_ref),
        phone_enc=c.encrypt(phone, table=TABLE, column="phone", row=holder_ref),
        phone_bidx=phone_index(keys, phone),
    )


def open_field(keys: DataKeys, holder_ref: str, column: str, blob: bytes) -> str:
    """Decrypt one of the holder's fields (``id_number``, ``name``, ``phone``)."""
    return keys.cipher.decrypt(blob, table=TABLE, column=column, row=holder_ref)
