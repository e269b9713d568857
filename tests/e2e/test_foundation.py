"""The four services as real uvicorn processes on PostgreSQL, reached through the gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.cluster import Cluster
from support.cluster import pg_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, run_id: str) -> Iterator[Cluster]:
    with pg_cluster(tmp_path_factory.mktemp("foundation"), run_id + "f") as c:
        yield c


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return lines


def test_health_and_readiness_through_the_gateway(cluster: Cluster) -> None:
    gw = cluster.url("gateway")
    assert httpx.get(gw + "/livez").json() == {"status": "ok"}
    ready = httpx.get(gw + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "not_draining": True,
        "identity": True,
        "issuance": True,
        "settlement": True,
    }
    for svc in ("identity", "issuance", "settlement"):
        body = httpx.get(cluster.url(svc) + "/readyz").json()
        assert body["checks"]["database"] is True
        assert body["checks"]["keys"] is True


def test_unknown_route_is_a_problem(cluster: Cluster) -> None:
    resp = httpx.get(cluster.url("gateway") + "/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 404
    assert body["instance"] == "/v1/no-such-thing"
    assert body["request_id"] == resp.headers["x-request-id"]


def test_wrong_method_on_a_known_route_is_405(cluster: Cluster) -> None:
    resp = httpx.delete(cluster.url("gateway") + "/v1/scans")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
    assert resp.json()["status"] == 405


def test_request_id_reaches_the_upstream_log(cluster: Cluster) -> None:
    rid = "e2e-" + str(time.time_ns())
    resp = httpx.get(
        cluster.url("gateway") + "/.well-known/oauth-authorization-server",
        headers={"X-Request-ID": rid},
    )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == rid
    assert resp.json()["issuer"] == cluster.url("gateway")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        upstream = [
            line
            for line in _log_lines(cluster.procs["identity"].log_path)
            if line.get("request_id") == rid
        ]
        if upstream:
            break
        time.sleep(0.1)
    assert upstream, "identity never logged the gateway's request id"
    assert upstream[0]["route"] == "/.well-known/oauth-authorization-server"
    gateway_lines: list[dict[str, object]] = []
    while time.monotonic() < deadline + 5 and not gateway_lines:
        gateway_lines = [
            line
            for line in _log_lines(cluster.procs["gateway"].log_path)
            if line.get("request_id") == rid
        ]
        time.sleep(0.05)
    assert gateway_lines
    assert gateway_lines[0]["status"] == 200


def test_invalid_request_id_is_replaced(cluster: Cluster) -> None:
    resp = httpx.get(
        cluster.url("gateway") + "/livez", headers={"X-Request-ID": "bad id; drop table"}
    )
    assert resp.headers["x-request-id"] != "bad id; drop table"
    assert len(resp.headers["x-request-id"]) == 32


def test_stopped_upstream_is_a_502_problem_and_readiness_fails(cluster: Cluster) -> None:
    gw = cluster.url("gateway")
    cluster.stop(["identity"])
    try:
        resp = httpx.get(gw + "/.well-known/oauth-authorization-server")
        assert resp.status_code == 502
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["detail"] == "The identity service is unreachable."
        ready = httpx.get(gw + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["identity"] is False
    finally:
        cluster.start(["identity"])
        cluster.wait_ready(["identity", "gateway"])
    assert httpx.get(gw + "/.well-known/oauth-authorization-server").status_code == 200


def test_backends_refuse_unsigned_callers(cluster: Cluster) -> None:
    # No unsigned identity header is trusted: a direct call without a token is 401.
    for svc in ("identity", "issuance", "settlement"):
        resp = httpx.get(
            cluster.url(svc) + "/internal/whoami", headers={"X-Client-Id": "ops", "X-Scopes": "ops"}
        )
        assert resp.status_code == 401, svc
        assert resp.headers["content-type"] == "application/problem+json"


def test_sigterm_exits_zero(cluster: Cluster) -> None:
    codes = cluster.stop(["settlement"])
    try:
        assert codes == {"settlement": 0}
    finally:
        cluster.start(["settlement"])
        cluster.wait_ready(["settlement"])


def test_gateway_self_readiness_ignores_upstreams(cluster: Cluster) -> None:
    gw = cluster.url("gateway")
    cluster.stop(["issuance"])
    try:
        assert httpx.get(gw + "/readyz").status_code == 503
        shallow = httpx.get(gw + "/readyz?scope=self")
        assert shallow.status_code == 200
        assert shallow.json()["checks"] == {"not_draining": True}
    finally:
        cluster.start(["issuance"])
        cluster.wait_ready(["issuance"])
