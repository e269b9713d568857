"""A real cluster on PostgreSQL, seeded so that operations reach their real code (hardening).

Four uvicorn processes on fresh databases; identity's ``seed-demo`` (clients of every kind,
holders) and settlement's (policies); then through the gateway, as a partner app and a
hospital would: an e-card with payment enabled, a settlement, an identity QR. Access
tokens are signed with the cluster's own identity key (``devkit.bench.tokens``) for the
demo clients, so each client kind calls with its real id, region and level.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.tokens.claims import ClientKind
from support.cluster import pg_cluster
from support.journey import PIN, seed_demo
from support.journey import ecard_with_payment as _journey_ecard

ENV = {
    "SETTLEMENT_EVENT_POLL_SECONDS": "0.2",
    "SETTLEMENT_EVENT_IDLE_MAX_SECONDS": "0.5",
    "ISSUANCE_EVENT_POLL_SECONDS": "0.2",
    # Schemathesis sends requests back to back: the per-client limit is not what is tested.
    "GATEWAY_RATE_LIMIT_CLIENT": "5000/second",
}
SCOPES = {
    "partner_app": "ecard:issue ecard:manage ecard:qr holder:enquiry",
    "hospital": "scan settlement:write settlement:read reconciliation",
    "scanner": "scan",
    "ops": "ops",
}
BILL = [
    {"code": "A1", "name": "ward day", "category": "A", "quantity": "2", "unit_price": "300.00"},
    {"code": "B1", "name": "antibiotic", "category": "B", "quantity": "3", "unit_price": "45.50"},
]


@dataclass
class Seeded:
    """The running cluster, its demo clients and the objects made for the tests."""

    cluster: Cluster
    clients: list[dict[str, Any]]
    holders: list[dict[str, Any]]
    ids: dict[str, list[str]] = field(default_factory=dict)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.url("gateway")

    def client(self, kind: str, index: int = 0) -> dict[str, Any]:
        return [c for c in self.clients if c["kind"] == kind][index]

    def token(self, kind: str, index: int = 0) -> str:
        """A fresh-enough access token of the ``index``-th demo client of ``kind``."""
        key = f"{kind}:{index}"
        hit = self._tokens.get(key)
        if hit is not None and hit[1] > time.monotonic() + 60:
            return hit[0]
        entry = self.client(kind, index)
        token = access_token(
            self.cluster,
            client_id=entry["client_id"],
            kind=ClientKind(kind),
            scope=SCOPES[kind],
            region_code=entry.get("region_code"),
            level=entry.get("level"),
        )
        self._tokens[key] = (token, time.monotonic() + 540)
        return token

    def auth(self, kind: str, index: int = 0) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token(kind, index)}

    def row_counts(self) -> dict[str, int]:
        """Rows of every table of the three databases (``service.table`` → count)."""

        async def count() -> dict[str, int]:
            out: dict[str, int] = {}
            for svc, url in self.cluster.db_urls.items():
                conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
                try:
                    tables = await conn.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                        " AND tablename <> 'alembic_version'"
                    )
                    for row in tables:
                        name = row["tablename"]
                        out[f"{svc}.{name}"] = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
                finally:
                    await conn.close()
            return out

        return asyncio.run(count())


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def ecard_with_payment(
    http: httpx.Client, seeded: Seeded, holder: dict[str, Any], app: dict[str, str]
) -> str:
    """A demo holder verified by SMS, an e-card issued, a PIN set, payment enabled; its id."""
    return _journey_ecard(http, holder, app, seeded.auth("ops"))


def quote(http: httpx.Client, seeded: Seeded, ecard: str, app: dict[str, str]) -> str:
    """The hospital's way to a quote: the holder's payment QR, the scan, the quote; its id."""
    hospital = seeded.auth("hospital")
    qr = http.post(
        f"/v1/ecards/{ecard}/qrcodes", json={"purpose": "payment", "pin": PIN}, headers=app
    )
    assert qr.status_code == 201, qr.text
    scan = http.post(
        "/v1/scans",
        json={"qr_token": qr.json()["qr_token"], "purpose": "settlement"},
        headers=hospital,
    )
    assert scan.status_code == 201, scan.text
    quoted = http.post(
        "/v1/settlements/quotes",
        json={
            "settlement_token": scan.json()["settlement_token"],
            "visit": {"type": "outpatient"},
            "items": BILL,
        },
        headers=hospital,
    )
    assert quoted.status_code == 201, quoted.text
    return str(quoted.json()["quote_id"])


def _settle(http: httpx.Client, seeded: Seeded, ecard: str, app: dict[str, str]) -> str:
    settled = http.post(
        "/v1/settlements",
        json={"quote_id": quote(http, seeded, ecard, app)},
        headers={**seeded.auth("hospital"), "Idempotency-Key": secrets.token_hex(8)},
    )
    assert settled.status_code == 201, settled.text
    return str(settled.json()["settlement_id"])


@contextmanager
def seeded_cluster(
    tmp: Path,
    run_id: str,
    *,
    extra_env: dict[str, str] | None = None,
    before_start: Callable[[Cluster], None] | None = None,
) -> Iterator[Seeded]:
    """Start, seed, yield; torn down after (``before_start`` as in :func:`pg_cluster`)."""
    env = {**ENV, **(extra_env or {})}
    with pg_cluster(tmp, run_id, extra_env=env, before_start=before_start) as c:
        seed_demo(c)
        seeded = Seeded(
            c,
            json.loads((c.var_dir / "demo-clients.json").read_text()),
            json.loads((c.var_dir / "demo-holders.json").read_text()),
        )
        with httpx.Client(base_url=seeded.url, timeout=15) as http:
            app = seeded.auth("partner_app")
            ecards = [ecard_with_payment(http, seeded, h, app) for h in seeded.holders[:2]]
            account = f"/v1/ecards/{ecards[0]}/account"
            eventually(lambda: http.get(account, headers=app).json().get("opened") is True)
            settlement = _settle(http, seeded, ecards[0], app)
            h5 = http.post(f"/v1/ecards/{ecards[0]}/h5-sessions", headers=app)
            assert h5.status_code == 201, h5.text
            seeded.ids = {
                "ecard_id": ecards,
                "settlement_id": [settlement],
                "region_code": ["370200", "310000"],
                "client_id": [seeded.client("partner_app", 1)["client_id"]],
                "card_number": [h["card_number"] for h in seeded.holders[2:4]],
                "session_token": [h5.json()["url"].rsplit("/", 1)[-1]],
                "asset": ["ecard.css", "ecard.js"],
            }
        yield seeded
