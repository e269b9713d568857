"""The identity service as a real process on PostgreSQL, called as the gateway would call it;
its log file never carries an ID number, a name or a phone."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devkit.cluster import Cluster
from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyStore
from support.cluster import pg_cluster
from support.identity import ClientKey, basic, fresh_rows

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

FORM_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Cluster]:
    with pg_cluster(tmp_path_factory.mktemp("identity-e2e"), run_id + "i") as c:
        yield c


def _internal(cluster: Cluster, client_id: str, kind: ClientKind, scope: str) -> dict[str, str]:
    """A token signed with the gateway's own key ring, exactly what it forwards upstream."""
    key = KeyStore(cluster.var_dir / "keys" / "gateway").load().signing_key("internal")
    now = int(time.time())
    claims = InternalTokenClaims(
        iss="urn:essc:gateway",
        sub=client_id,
        aud="urn:essc:identity",
        iat=now,
        exp=now + 300,
        jti=secrets.token_urlsafe(12),
        client_id=client_id,
        kind=kind,
        scope=scope,
    )
    return {"Authorization": "Bearer " + sign_token(INTERNAL, claims, key)}


def test_identity_flows_as_a_process_and_logs_no_personal_data(cluster: Cluster) -> None:
    url = cluster.url("identity")
    ops = _internal(cluster, "ops_e2e", ClientKind.OPS, "ops")
    http = httpx.Client(base_url=url, timeout=10)
    rows = fresh_rows(5)
    imported = http.post("/v1/admin/holders", json={"holders": rows}, headers=ops)
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == 5

    # Clients: one with keys, one sandbox (token through the gateway's public route).
    key = ClientKey.new()
    app = http.post(
        "/v1/admin/clients",
        json={"kind": "partner_app", "name": "E2E app", "jwks": key.jwks},
        headers=ops,
    ).json()
    sandbox = http.post(
        "/v1/admin/clients",
        json={"kind": "scanner", "name": "E2E scanner", "sandbox_secret": True},
        headers=ops,
    ).json()
    issuer = cluster.url("gateway")
    token = http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": FORM_ASSERTION,
            "client_assertion": key.assertion(app["client_id"], aud=issuer),
        },
    )
    assert token.status_code == 200, token.text
    via_gateway = httpx.post(
        issuer + "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(sandbox["client_id"], sandbox["client_secret"]),
    )
    assert via_gateway.status_code == 200, via_gateway.text
    assert via_gateway.json()["scope"] == "scan"

    # Verification: a mismatch, then the OTP flow with the SMS outbox.
    partner = _internal(cluster, app["client_id"], ClientKind.PARTNER_APP, "ecard:issue")
    details = {k: rows[0][k] for k in ("name", "id_number", "card_number", "phone")}
    wrong = http.post(
        "/v1/verifications", json={**details, "phone": rows[1]["phone"]}, headers=partner
    )
    assert wrong.status_code == 422
    started = http.post("/v1/verifications", json=details, headers=partner)
    assert started.status_code == 201, started.text
    outbox = http.get(
        "/v1/admin/sms-outbox", params={"phone": details["phone"]}, headers=ops
    ).json()
    code = outbox["items"][0]["code"]
    confirmed = http.post(
        f"/v1/verifications/{started.json()['verification_id']}/confirm",
        json={"code": code},
        headers=partner,
    )
    assert confirmed.status_code == 200, confirmed.text

    # Card status, then the feed as settlement reads it.
    lost = http.post(
        f"/v1/admin/cards/{rows[2]['card_number']}/status", json={"status": "lost"}, headers=ops
    )
    assert lost.status_code == 200
    feed = http.get(
        "/internal/v1/events",
        params={"after": 0},
        headers=_internal(cluster, "service:settlement", ClientKind.SERVICE, "internal"),
    )
    assert feed.status_code == 200
    types = [e["type"] for e in feed.json()["items"]]
    assert types == ["holder.upserted"] * 5 + ["card.status_changed"]
    # No unsigned caller gets in.
    assert http.get("/internal/v1/events").status_code == 401

    log = cluster.procs["identity"].log_path.read_text(errors="replace")
    assert log.count("\n") > 5
    secrets_seen = [
        value
        for row in rows
        for value in (row["id_number"], row["name"], row["phone"])
        if value in log
    ]
    assert secrets_seen == []
    for line in log.splitlines():
        try:
            record: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        assert record.get("service") in (None, "identity")
