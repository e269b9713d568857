"""Field encryption is bound to table/column/row/version; blind indexes are keyed and stable."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from shared.fieldcrypto import (
    FieldCipher,
    FieldCryptoError,
    load_data_keys,
    mask_card_number,
    mask_id_number,
    mask_name,
    mask_phone,
)

ID = "360426199101010071"


def test_round_trip_and_fresh_nonce() -> None:
    cipher = FieldCipher({1: os.urandom(32)})
    a = cipher.encrypt(ID, table="holder", column="id_number", row="h1")
    b = cipher.encrypt(ID, table="holder", column="id_number", row="h1")
    assert a != b
    assert ID.encode() not in a
    assert cipher.decrypt(a, table="holder", column="id_number", row="h1") == ID


@pytest.mark.parametrize(
    ("table", "column", "row"),
    [("other", "id_number", "h1"), ("holder", "phone", "h1"), ("holder", "id_number", "h2")],
)
def test_ciphertext_moved_elsewhere_fails(table: str, column: str, row: str) -> None:
    cipher = FieldCipher({1: os.urandom(32)})
    blob = cipher.encrypt(ID, table="holder", column="id_number", row="h1")
    with pytest.raises(FieldCryptoError):
        cipher.decrypt(blob, table=table, column=column, row=row)


def test_rotation_keeps_old_versions_readable() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    old = FieldCipher({1: k1}).encrypt("张三", table="t", column="c", row="r")
    both = FieldCipher({1: k1, 2: k2})
    assert both.current == 2
    assert both.decrypt(old, table="t", column="c", row="r") == "张三"
    new = both.encrypt("张三", table="t", column="c", row="r")
    assert both.version_of(new) == 2
    with pytest.raises(FieldCryptoError):
        FieldCipher({1: k1}).decrypt(new, table="t", column="c", row="r")


def test_key_file_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "data.json"
    keys = load_data_keys(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_data_keys(path, create=False)
    blob = keys.cipher.encrypt(ID, table="t", column="c", row="1")
    assert again.cipher.decrypt(blob, table="t", column="c", row="1") == ID
    assert keys.index.digest(ID, purpose="id") == again.index.digest(ID, purpose="id")
    assert keys.index.digest(ID, purpose="id") != keys.index.digest(ID, purpose="phone")
    with pytest.raises(FileNotFoundError):
        load_data_keys(tmp_path / "missing.json", create=False)


def test_masks() -> None:
    assert mask_id_number(ID) == "3604**********0071"
    assert mask_name("张三丰") == "张**"
    assert mask_phone("13800138000") == "138****8000"
    assert mask_card_number("A12345678") == "A1*****78"


def _load_at_once(args: tuple[str, Any]) -> str:
    path, barrier = args
    barrier.wait()
    try:
        keys = load_data_keys(Path(path), create=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return keys.index.digest("370200199001010021", purpose="race").hex()


def test_replicas_starting_together_agree_on_one_set_of_data_keys(tmp_path: Path) -> None:
    """Two processes of a service starting at once on a fresh key directory (``make run
    REPLICAS=2``) must end with the same keys, or one could not read the other's rows. Eight
    processes released together, a few rounds: every one loads, and all load the same keys."""
    # forkserver: children forked from a clean server, not from this threaded test process.
    ctx = multiprocessing.get_context("forkserver")
    outcomes: list[set[str]] = []
    ctx.set_forkserver_preload(["shared.fieldcrypto"])
    with ctx.Manager() as manager, ctx.Pool(8) as pool:
        for round_ in range(12):
            barrier = manager.Barrier(8)
            path = str(tmp_path / f"r{round_}" / "data.json")
            outcomes.append(set(pool.map(_load_at_once, [(path, barrier)] * 8)))
    assert all(len(seen) == 1 for seen in outcomes), outcomes
    assert all(len(next(iter(seen))) == 64 for seen in outcomes), outcomes  # digests, no errors
