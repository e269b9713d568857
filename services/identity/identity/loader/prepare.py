"""Worker side of the bulk loader: validate and encrypt rows (runs in a process pool).

Each worker loads the data keys once (``init``) and turns raw rows into the
staging table's tuples; a refused row becomes ``(line, [field names])`` (never
its values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from identity.holders import crypto
from identity.holders.fields import birth_date_of, gender_of
from identity.holders.schemas import HolderRow
from shared.fieldcrypto import DataKeys, load_data_keys

_KEYS: DataKeys | None = None

Prepared = tuple[list[tuple[Any, ...]], list[tuple[int, list[str]]]]


def init(keys_path: str, create: bool) -> None:
    """Pool initializer: load the data keys into this worker."""
    global _KEYS
    _KEYS = load_data_keys(Path(keys_path), create=create)


def prepare(chunk: list[tuple[int, dict[str, Any]]]) -> Prepared:
    """Staging tuples of the valid rows, and (line, fields) of the refused ones."""
    keys = _KEYS
    assert keys is not None, "init() was not called"
    out: list[tuple[Any, ...]] = []
    refused: list[tuple[int, list[str]]] = []
    for line, raw in chunk:
        try:
            row = HolderRow.model_validate(raw)
        except ValidationError as exc:
            refused.append(
                (line, sorted({str(e["loc"][0]) if e["loc"] else "row" for e in exc.errors()}))
            )
            continue
        ref = crypto.new_holder_ref()
        sealed = crypto.seal(keys, ref, id_number=row.id_number, name=row.name, phone=row.phone)
        out.append(
            (
                line,
                ref,
                sealed.id_number_enc,
                sealed.id_number_bidx,
                sealed.name_enc,
                sealed.phone_enc,
                sealed.phone_bidx,
                gender_of(row.id_number),
                birth_date_of(row.id_number),
                row.region_code,
                row.insurance_type,
                crypto.new_card_ref(),
                row.card_number,
                row.card_status,
                row.account_balance,
            )
        )
    return out, refused
