"""Holder files: JSON lines or CSV (header row with the import row's field names)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FIELDS = (
    "name",
    "id_number",
    "phone",
    "card_number",
    "region_code",
    "insurance_type",
    "card_status",
    "account_balance",
)


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a ``.csv`` file (by header) or of JSON lines (anything else); blank lines skipped."""
    with path.open(encoding="utf-8", newline="") as fh:
        if path.suffix.lower() == ".csv":
            for row in csv.DictReader(fh):
                yield {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            return
        for line in fh:
            line = line.strip()
            if line:
                value = json.loads(line)
                yield value if isinstance(value, dict) else {"_invalid": True}


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as CSV (``.csv``) or JSON lines; returns the count."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        if path.suffix.lower() == ".csv":
            writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                count += 1
            return count
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
