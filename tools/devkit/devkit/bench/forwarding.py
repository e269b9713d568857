"""The gateway's forwarding cost: a trivial GET through the gateway against the service directly."""

from __future__ import annotations

from devkit.bench.core import Row, cpu_meter, wrk
from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.tokens.claims import ClientKind

PATH = "/.well-known/oauth-authorization-server"


def run(cluster: Cluster, *, duration: int) -> list[Row]:
    """Direct GET to identity, then the same GET through the gateway (wrk -t1 -c32)."""
    identity = cluster.procs["identity"].popen.pid
    gateway = cluster.procs["gateway"].popen.pid
    wrk(cluster.url("identity") + PATH, duration=2)  # warm-up
    with cpu_meter([identity]) as cpu:
        direct = wrk(cluster.url("identity") + PATH, duration=duration)
    direct_cpu = cpu[0] / max(direct.requests, 1) * 1e6
    wrk(cluster.url("gateway") + PATH, duration=2)
    with cpu_meter([identity, gateway]) as cpu:
        proxied = wrk(cluster.url("gateway") + PATH, duration=duration)
    proxied_cpu = cpu[0] / max(proxied.requests, 1) * 1e6
    token = access_token(cluster, client_id="bench-scanner", kind=ClientKind.SCANNER, scope="scan")
    auth = [f"Authorization: Bearer {token}"]
    wrk(cluster.url("gateway") + "/v1/whoami", duration=2, headers=auth)
    with cpu_meter([identity, gateway]) as cpu:
        authed = wrk(cluster.url("gateway") + "/v1/whoami", duration=duration, headers=auth)
    authed_cpu = cpu[0] / max(authed.requests, 1) * 1e6
    return [
        Row(
            "forwarding",
            "GET identity directly",
            direct.rps,
            direct.p50_ms,
            direct.p99_ms,
            direct_cpu,
            notes=f"errors {direct.errors}",
        ),
        Row(
            "forwarding",
            "same GET through the gateway",
            proxied.rps,
            proxied.p50_ms,
            proxied.p99_ms,
            proxied_cpu,
            ratio=proxied.rps / direct.rps,
            ratio_of="direct",
            notes=f"errors {proxied.errors}; CPU summed gateway+identity",
        ),
        Row(
            "forwarding",
            "authenticated GET /v1/whoami through the gateway",
            authed.rps,
            authed.p50_ms,
            authed.p99_ms,
            authed_cpu,
            ratio=authed.rps / proxied.rps,
            ratio_of="unauthenticated forwarding",
            notes=f"errors {authed.errors}; token verified once, then cached",
        ),
    ]
