"""Key rotation without downtime, on the real cluster: under load, nothing fails."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.tokens.claims import ClientKind
from shared.tokens.keys import KeyStore
from support.cluster import pg_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Cluster]:
    # A short JWKS cache so that the test does not wait five minutes for "published long
    # enough"; verifiers still learn new keys only through the JWKS.
    env = {
        f"{p}_JWKS_CACHE_SECONDS": "2" for p in ("GATEWAY", "IDENTITY", "ISSUANCE", "SETTLEMENT")
    }
    env["GATEWAY_RATE_LIMIT_CLIENT"] = "100000/second"
    with pg_cluster(tmp_path_factory.mktemp("rotation"), run_id + "k", extra_env=env) as c:
        yield c


def ops_token(cluster: Cluster) -> str:
    return access_token(cluster, client_id="ops-1", kind=ClientKind.OPS, scope="ops")


def test_rotation_requires_ops(cluster: Cluster) -> None:
    gw = cluster.url("gateway")
    partner = access_token(
        cluster,
        client_id="app-1",
        kind=ClientKind.PARTNER_APP,
        scope="ecard:issue ecard:manage ecard:qr holder:enquiry",
    )
    resp = httpx.post(
        gw + "/v1/admin/keys/rotate",
        json={"purpose": "qr"},
        headers={"Authorization": f"Bearer {partner}"},
    )
    assert resp.status_code == 403
    assert httpx.post(gw + "/v1/admin/keys/rotate", json={"purpose": "qr"}).status_code == 401
    bad = httpx.post(
        gw + "/v1/admin/keys/rotate",
        json={"purpose": "nope"},
        headers={"Authorization": f"Bearer {ops_token(cluster)}"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "purpose"


def test_rotation_under_load_loses_no_request(cluster: Cluster) -> None:
    gw = cluster.url("gateway")
    old_token = ops_token(cluster)  # signed with identity's access key before the rotation
    before = {p: KeyStore(cluster.var_dir / "keys" / p).load() for p in ("gateway", "identity")}

    async def load(stop: asyncio.Event, statuses: list[int]) -> None:
        async with httpx.AsyncClient(base_url=gw, timeout=10) as client:
            while not stop.is_set():
                token = old_token if len(statuses) % 2 else ops_token(cluster)
                resp = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
                statuses.append(resp.status_code)

    async def scenario() -> tuple[list[int], list[dict[str, object]]]:
        stop = asyncio.Event()
        statuses: list[int] = []
        workers = [asyncio.create_task(load(stop, statuses)) for _ in range(4)]
        results = []
        async with httpx.AsyncClient(base_url=gw, timeout=30) as client:
            await asyncio.sleep(0.5)
            for purpose in ("internal", "access"):
                resp = await client.post(
                    "/v1/admin/keys/rotate",
                    json={"purpose": purpose},
                    headers={"Authorization": f"Bearer {ops_token(cluster)}"},
                )
                assert resp.status_code == 200, resp.text
                results.append(resp.json())
                await asyncio.sleep(6)  # replicas re-read key files every 5 s
        stop.set()
        await asyncio.gather(*workers)
        return statuses, results

    statuses, results = asyncio.run(scenario())
    assert len(statuses) > 100
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    internal = results[0]
    assert internal["purpose"] == "internal"
    assert {r["service"] for r in internal["rotated"]} == {
        "gateway",
        "identity",
        "issuance",
        "settlement",
    }
    gw_before = before["gateway"]
    gw_after = KeyStore(cluster.var_dir / "keys" / "gateway").load()
    old_current = gw_before.signing_key("internal").kid
    new_current = gw_after.signing_key("internal").kid
    assert new_current != old_current
    # The new signing key had been published as "next" before it was used.
    assert new_current in {k["kid"] for k in gw_before.jwks()["keys"]}
    assert old_current in results[0]["rotated"][0]["previous_kids"]
    access = results[1]["rotated"][0]
    assert access["service"] == "identity"
    assert access["previous_kids"] == [before["identity"].signing_key("access").kid]
    # A token signed before the rotation still works afterwards; one signed now uses the new key.
    assert (
        httpx.get(gw + "/v1/whoami", headers={"Authorization": f"Bearer {old_token}"}).status_code
        == 200
    )
    fresh = ops_token(cluster)
    assert (
        httpx.get(gw + "/v1/whoami", headers={"Authorization": f"Bearer {fresh}"}).json()[
            "client_id"
        ]
        == "ops-1"
    )


def test_command_line_rotation_is_picked_up_without_restart(cluster: Cluster) -> None:
    keys_dir = cluster.var_dir / "keys" / "issuance"
    before = KeyStore(keys_dir).load().signing_key("qr").kid
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.keyrotation",
            "--keys-dir",
            str(keys_dir),
            "--purpose",
            "qr",
            "--service",
            "issuance",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout)
    assert result["previous_kids"] == [before]
    assert result["current_kid"] != before
    deadline = time.monotonic() + 10
    published: set[str] = set()
    while time.monotonic() < deadline:
        published = {
            k["kid"]
            for k in httpx.get(cluster.url("issuance") + "/internal/jwks.json").json()["keys"]
        }
        if result["next_kid"] in published:
            break
        time.sleep(0.2)
    assert {result["current_kid"], result["next_kid"], before} <= published
