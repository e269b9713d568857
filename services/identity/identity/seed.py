"""``python -m identity seed-demo``: the demo data of ``make run`` (idempotent).

The ten cities' holders (synthetic, with opening balances), two partner apps,
hospitals of each level in several cities, a scanner, an ops client — all
sandbox clients with secrets — and a development face provider with its own key
pair. Writes ``demo-clients.json`` (credentials) and ``demo-holders.json`` (a few
holders' plain details for trying a verification) under ``var/``: local demo
data, never committed. Running it again keeps the clients and their secrets.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from identity.clients.keys import normalize_jwks
from identity.clients.schemas import KIND_SCOPES
from identity.clients.secrets import hash_secret, verify_secret
from identity.config import IdentitySettings
from identity.holders.service import import_holders
from identity.loader.synth import holders
from identity.models import Client
from shared.db import Database, make_engine
from shared.fieldcrypto import load_data_keys
from shared.tokens.claims import ClientKind
from shared.tokens.keys import KeyState, ManagedKey, public_jwk

FACE_KEY_FILE = "face-provider-dev.json"


@dataclass(frozen=True)
class DemoClient:
    name: str
    kind: ClientKind
    region_code: str | None = None
    level: int | None = None


DEMO_CLIENTS = (
    DemoClient("Demo Wallet (partner app)", ClientKind.PARTNER_APP),
    DemoClient("Demo Bank (partner app)", ClientKind.PARTNER_APP),
    DemoClient("Qingdao Municipal Hospital", ClientKind.HOSPITAL, "370200", 3),
    DemoClient("Qingdao Shinan Community Clinic", ClientKind.HOSPITAL, "370200", 1),
    DemoClient("Lishui Central Hospital", ClientKind.HOSPITAL, "331100", 2),
    DemoClient("Fuzhou First Hospital", ClientKind.HOSPITAL, "350100", 3),
    DemoClient("Guangzhou Tianhe Hospital", ClientKind.HOSPITAL, "440100", 2),
    DemoClient("Chengdu Jinjiang Pharmacy", ClientKind.HOSPITAL, "510100", 1),
    DemoClient("Shanghai Ruijin Hospital", ClientKind.HOSPITAL, "310000", 3),
    DemoClient("Beijing Chaoyang Clinic", ClientKind.HOSPITAL, "110000", 2),
    DemoClient("Qingdao Service Hall Scanner", ClientKind.SCANNER, "370200"),
    DemoClient("Platform Operations", ClientKind.OPS),
)
FACE_PROVIDER = DemoClient("Development Face Provider", ClientKind.FACE_PROVIDER)
PREFIX = {"partner_app": "app", "hospital": "hos", "scanner": "scn", "ops": "ops"}


def _write_private(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)


def face_key(settings: IdentitySettings) -> tuple[ManagedKey, dict[str, Any]]:
    """The development face provider's key pair (created on first use) and its file."""
    path = settings.keys_dir / FACE_KEY_FILE
    if path.exists():
        doc = json.loads(path.read_text())
        private = serialization.load_pem_private_key(doc["private_key_pem"].encode(), None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"{path} does not hold an EC key")
        key = ManagedKey(doc["kid"], "face", KeyState.CURRENT, private, datetime.now(UTC))
        return key, doc
    key = ManagedKey.generate("face", state=KeyState.CURRENT, now=datetime.now(UTC))
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    doc = {"kid": key.kid, "private_key_pem": pem, "client_id": None}
    _write_private(path, doc)
    return key, doc


def _known_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {
        e["client_id"]: e["client_secret"]
        for e in json.loads(path.read_text())
        if e.get("client_secret")
    }


async def seed_demo(
    settings: IdentitySettings, clients_out: Path, holders_out: Path, holder_count: int = 300
) -> list[dict[str, Any]]:
    """Create or keep the demo clients and holders; write the two JSON files."""
    if settings.is_production:
        raise SystemExit("seed-demo refuses to run in production")
    keys = load_data_keys(settings.data_keys_path, create=True)
    known = _known_secrets(clients_out)
    db = Database(make_engine(settings.database_url))
    out: list[dict[str, Any]] = []
    try:
        async with db.sessionmaker() as session:
            for spec in DEMO_CLIENTS:
                client = (
                    await session.scalars(
                        select(Client).where(
                            Client.name == spec.name, Client.kind == spec.kind.value
                        )
                    )
                ).first()
                secret = known.get(client.client_id) if client else None
                n = settings.secret_scrypt_n
                if client is None:
                    secret = secrets.token_urlsafe(32)
                    client = Client(
                        client_id=f"{PREFIX[spec.kind.value]}_{secrets.token_hex(8)}",
                        kind=spec.kind.value,
                        name=spec.name,
                        region_code=spec.region_code,
                        level=spec.level,
                        scopes=" ".join(sorted(KIND_SCOPES[spec.kind])),
                        status="active",
                        secret_hash=hash_secret(secret, n=n),
                        created_at=datetime.now(UTC),
                    )
                    session.add(client)
                elif secret is None or not verify_secret(secret, client.secret_hash, n=n):
                    secret = secrets.token_urlsafe(32)
                    client.secret_hash = hash_secret(secret, n=n)
                    client.status = "active"
                item: dict[str, Any] = {
                    "name": spec.name,
                    "kind": spec.kind.value,
                    "client_id": client.client_id,
                    "client_secret": secret,
                    "scopes": client.scopes.split(),
                }
                if spec.kind is ClientKind.HOSPITAL:
                    item.update(region_code=spec.region_code, level=spec.level)
                elif spec.region_code:
                    item["region_code"] = spec.region_code
                out.append(item)
            out.append(await _face_provider(session, settings))
            rows = list(holders(holder_count, seed=2018))
            for start in range(0, len(rows), 1000):
                await import_holders(session, keys, rows[start : start + 1000], actor="seed-demo")
            await session.commit()
    finally:
        await db.dispose()
    _write_private(clients_out, out)
    demo = [{k: r[k] for k in ("name", "id_number", "card_number", "phone")} for r in rows[:5]]
    _write_private(holders_out, demo)
    return out


async def _face_provider(session: Any, settings: IdentitySettings) -> dict[str, Any]:
    key, doc = face_key(settings)
    jwks = normalize_jwks({"keys": [public_jwk(key.public_key, key.kid)]})
    client = (
        await session.scalars(
            select(Client).where(Client.name == FACE_PROVIDER.name, Client.kind == "face_provider")
        )
    ).first()
    if client is None:
        client = Client(
            client_id=f"fce_{secrets.token_hex(8)}",
            kind="face_provider",
            name=FACE_PROVIDER.name,
            scopes="",
            status="active",
            jwks=jwks,
            created_at=datetime.now(UTC),
        )
        session.add(client)
    else:
        client.jwks = jwks
    if doc.get("client_id") != client.client_id:
        doc["client_id"] = client.client_id
        _write_private(settings.keys_dir / FACE_KEY_FILE, doc)
    return {
        "name": FACE_PROVIDER.name,
        "kind": "face_provider",
        "client_id": client.client_id,
        "client_secret": None,
        "scopes": [],
        "attest_with": "python -m identity face-attest --id-number <ID number>",
    }
