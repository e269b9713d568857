"""Print the Secrets that deploy/k8s references, with fresh values, for ``kubectl apply``.

    python -m devkit.k8s_secrets --namespace essc | kubectl apply --server-side -f -

The output holds live credentials and private keys: pipe it, never write it into the
repository. It makes, for the platform's namespace:

- ``essc-<service>-db`` (identity, issuance, settlement; ``kubernetes.io/basic-auth``): the
  role's password. CloudNativePG sets the role's password from it and the service builds its
  ``<SERVICE>_DATABASE_URL`` from it.
- ``essc-redis``: Redis's ``requirepass``, which the services put in ``<SERVICE>_REDIS_URL``.
- ``essc-<part>-keys`` (all four parts): ``keyring.json``, a fresh ES256 key ring (a current
  and a next key per signing purpose) and, for identity and issuance, ``data.json`` (the
  field-encryption and blind-index keys).

``--only db`` (or ``redis``, ``keys``) and ``--part`` limit the output, for rotating one kind
of secret (deploy/README.md). Passwords are hex: they go into connection URLs unescaped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared.fieldcrypto import load_data_keys
from shared.tokens.keys import KeyStore

PARTS = ("gateway", "identity", "issuance", "settlement")
DATABASE_SERVICES = ("identity", "issuance", "settlement")
DATA_KEY_SERVICES = ("identity", "issuance")
KINDS = ("db", "redis", "keys")
INTERNAL_PURPOSE = "internal"


def key_purposes(part: str) -> tuple[str, ...]:
    """The signing-key purposes a part owns (its ``main.KEY_PURPOSES`` plus ``internal``)."""
    module = importlib.import_module(f"{part}.main")
    purposes: tuple[str, ...] = tuple(getattr(module, "KEY_PURPOSES", ()))
    return tuple(dict.fromkeys((*purposes, INTERNAL_PURPOSE)))


def _secret(
    name: str, namespace: str, string_data: dict[str, str], *, kind: str, part: str | None = None
) -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "essc", "essc/secret-kind": kind}
    if part:
        labels["app.kubernetes.io/name"] = part
    if kind == "db":
        labels["cnpg.io/reload"] = "true"  # CloudNativePG re-reads it when it changes
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "kubernetes.io/basic-auth" if kind == "db" else "Opaque",
        "stringData": string_data,
    }


def _key_files(part: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="essc-keys-") as tmp:
        store = KeyStore(Path(tmp))
        store.ensure(key_purposes(part))
        files = {KeyStore.FILENAME: store.path.read_text()}
        if part in DATA_KEY_SERVICES:
            data_path = Path(tmp) / "data.json"
            load_data_keys(data_path, create=True)
            files["data.json"] = data_path.read_text()
    return files


def build_secrets(
    namespace: str = "essc",
    *,
    only: tuple[str, ...] = KINDS,
    parts: tuple[str, ...] = PARTS,
) -> list[dict[str, Any]]:
    """The Secret objects (as dicts) of the given kinds for the given parts, fresh values."""
    out: list[dict[str, Any]] = []
    if "db" in only:
        for svc in DATABASE_SERVICES:
            if svc in parts:
                password = secrets.token_hex(24)
                out.append(
                    _secret(
                        f"essc-{svc}-db",
                        namespace,
                        {"username": svc, "password": password},
                        kind="db",
                        part=svc,
                    )
                )
    if "redis" in only:
        out.append(
            _secret("essc-redis", namespace, {"password": secrets.token_hex(24)}, kind="redis")
        )
    if "keys" in only:
        for part in PARTS:
            if part in parts:
                out.append(
                    _secret(
                        f"essc-{part}-keys", namespace, _key_files(part), kind="keys", part=part
                    )
                )
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m devkit.k8s_secrets``: writes a ``v1 List`` (JSON) to stdout."""
    parser = argparse.ArgumentParser(prog="python -m devkit.k8s_secrets", description=__doc__)
    parser.add_argument("--namespace", default="essc")
    parser.add_argument("--only", action="append", choices=KINDS, help="repeatable; default all")
    parser.add_argument("--part", action="append", choices=PARTS, help="repeatable; default all")
    args = parser.parse_args(argv)
    items = build_secrets(
        args.namespace,
        only=tuple(args.only or KINDS),
        parts=tuple(args.part or PARTS),
    )
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
