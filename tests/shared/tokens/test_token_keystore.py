"""KeyStore: the keyring.json file shared by the processes that sign with the same keys."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from shared.tokens.keys import KeyRing, KeyState, KeyStore, KeyStoreError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _describe(ring: KeyRing) -> list[tuple[str, str, str, datetime, datetime | None]]:
    return [(k.purpose, k.kid, k.state.value, k.created_at, k.retires_at) for k in ring.keys]


def test_save_load_round_trip(tmp_path: Path, now_dt: datetime) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.generate(["access", "qr"], now_dt).rotated(
        "qr", now=now_dt, retain=timedelta(minutes=5)
    )
    store = KeyStore(directory)
    store.save(ring)
    assert _mode(directory) == 0o700
    assert _mode(store.path) == 0o600
    assert sorted(os.listdir(directory)) == ["keyring.json"]  # no temp file left behind

    loaded = KeyStore(directory).load()
    assert _describe(loaded) == _describe(ring)
    # The loaded private key is the same key: its signature verifies with the original.
    key = loaded.signing_key("access")
    signature = key.private_key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    ring.signing_key("access").public_key.verify(signature, b"m", ec.ECDSA(hashes.SHA256()))

    doc = json.loads(store.path.read_text())
    record = doc["keys"][0]
    assert set(record) == {"purpose", "kid", "state", "created_at", "retires_at", "private_key_pem"}
    assert record["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8


def test_ensure_creates_then_adds_missing_purposes_only(tmp_path: Path, now_dt: datetime) -> None:
    store = KeyStore(tmp_path / "keys")
    first = store.ensure(["access"], now=now_dt)
    assert {(k.purpose, k.state) for k in first.keys} == {
        ("access", KeyState.CURRENT),
        ("access", KeyState.NEXT),
    }
    mtime = store.path.stat().st_mtime_ns
    inode = store.path.stat().st_ino

    again = KeyStore(tmp_path / "keys").ensure(["access"], now=now_dt)
    assert _describe(again) == _describe(first)
    assert (store.path.stat().st_mtime_ns, store.path.stat().st_ino) == (mtime, inode)

    grown = KeyStore(tmp_path / "keys").ensure(["access", "qr"], now=now_dt)
    assert grown.purposes == frozenset({"access", "qr"})
    assert grown.signing_key("access").kid == first.signing_key("access").kid
    assert KeyStore(tmp_path / "keys").load().signing_key("qr").kid == grown.signing_key("qr").kid


def test_reload_if_changed_picks_up_another_process_rotation(
    tmp_path: Path, now_dt: datetime
) -> None:
    reader = KeyStore(tmp_path)
    ring = reader.ensure(["access"], now=now_dt)
    assert reader.reload_if_changed() is None

    writer = KeyStore(tmp_path)
    rotated = writer.rotate("access", now=now_dt, retain=timedelta(minutes=15))
    assert rotated.signing_key("access").kid != ring.signing_key("access").kid

    reloaded = reader.reload_if_changed()
    assert reloaded is not None
    assert reloaded.signing_key("access").kid == rotated.signing_key("access").kid
    assert reader.reload_if_changed() is None


def test_reload_if_changed_without_file(tmp_path: Path) -> None:
    assert KeyStore(tmp_path / "none").reload_if_changed() is None


def _tamper(store: KeyStore, change: Any) -> None:
    doc = json.loads(store.path.read_text())
    change(doc)
    store.path.write_text(json.dumps(doc))


def _swap_kid(doc: dict[str, Any]) -> None:
    doc["keys"][0]["kid"] = doc["keys"][1]["kid"]


def _all_current(doc: dict[str, Any]) -> None:
    for record in doc["keys"]:
        record["state"] = "current"


def _bad_pem(doc: dict[str, Any]) -> None:
    doc["keys"][0]["private_key_pem"] = (
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )


def _naive_date(doc: dict[str, Any]) -> None:
    doc["keys"][0]["created_at"] = "2030-01-01T00:00:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_swap_kid, "thumbprint"),
        (_all_current, "two current"),
        (_bad_pem, "PEM"),
        (_naive_date, "timezone"),
        (lambda doc: doc["keys"][0].pop("state"), "missing field 'state'"),
        (lambda doc: doc["keys"][0].update(state="retired"), "retired"),
        (lambda doc: doc.update(format="other"), "format"),
        (lambda doc: doc.update(keys={}), "'keys' must be a list"),
        (lambda doc: doc["keys"].append(7), "not an object"),
    ],
)
def test_invalid_file_raises_keystore_error(
    tmp_path: Path, now_dt: datetime, change: Any, message: str
) -> None:
    store = KeyStore(tmp_path)
    store.ensure(["access"], now=now_dt)
    _tamper(store, change)
    with pytest.raises(KeyStoreError, match=message):
        KeyStore(tmp_path).load()


def test_not_json_and_missing_file(tmp_path: Path, now_dt: datetime) -> None:
    with pytest.raises(KeyStoreError, match="cannot open"):
        KeyStore(tmp_path).load()
    store = KeyStore(tmp_path)
    store.ensure(["access"], now=now_dt)
    store.path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        store.load()
    # ensure() refuses to paper over a corrupt file with fresh keys.
    with pytest.raises(KeyStoreError):
        store.ensure(["access"], now=now_dt)
    assert store.path.read_text() == "{not json"


def test_group_readable_file_is_refused(tmp_path: Path, now_dt: datetime) -> None:
    store = KeyStore(tmp_path)
    store.ensure(["access"], now=now_dt)
    store.path.chmod(0o640)
    with pytest.raises(KeyStoreError, match="0600"):
        store.load()


def test_symlinked_file_is_refused(tmp_path: Path, now_dt: datetime) -> None:
    real = KeyStore(tmp_path / "real")
    real.ensure(["access"], now=now_dt)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "keyring.json").symlink_to(real.path)
    with pytest.raises(KeyStoreError, match="cannot open"):
        KeyStore(tmp_path / "link").load()
