"""The gateway's forwarding cost: a trivial GET through the gateway against the service directly.

CPU is read per process (gateway, identity) from /proc, so the gateway's own CPU per
forwarded request is a figure of its own (what the capacity plan sizes the gateway from).
"""

from __future__ import annotations

from devkit.bench.core import Meter, Row, wrk
from devkit.bench.tokens import access_token
from devkit.cluster import Cluster
from shared.tokens.claims import ClientKind

PATH = "/.well-known/oauth-authorization-server"


def run(cluster: Cluster, *, duration: int) -> list[Row]:
    """Direct GET to identity, then the same GET through the gateway (wrk -t1 -c32)."""
    identity = cluster.procs["identity"].popen.pid
    gateway = cluster.procs["gateway"].popen.pid
    both = {"gateway": [gateway], "identity": [identity]}
    wrk(cluster.url("identity") + PATH, duration=2)  # warm-up
    with Meter({"identity": [identity]}) as m_direct:
        direct = wrk(cluster.url("identity") + PATH, duration=duration)
    wrk(cluster.url("gateway") + PATH, duration=2)
    with Meter(both) as m_proxied:
        proxied = wrk(cluster.url("gateway") + PATH, duration=duration)
    token = access_token(cluster, client_id="bench-scanner", kind=ClientKind.SCANNER, scope="scan")
    auth = [f"Authorization: Bearer {token}"]
    wrk(cluster.url("gateway") + "/v1/whoami", duration=2, headers=auth)
    with Meter(both) as m_authed:
        authed = wrk(cluster.url("gateway") + "/v1/whoami", duration=duration, headers=auth)
    return [
        Row(
            "forwarding",
            "GET identity directly",
            direct.rps,
            direct.p50_ms,
            direct.p99_ms,
            m_direct.total / max(direct.requests, 1) * 1e6,
            notes=f"errors {direct.errors}",
            extra=m_direct.breakdown(direct.requests),
        ),
        Row(
            "forwarding",
            "same GET through the gateway",
            proxied.rps,
            proxied.p50_ms,
            proxied.p99_ms,
            m_proxied.total / max(proxied.requests, 1) * 1e6,
            ratio=proxied.rps / direct.rps,
            ratio_of="direct",
            notes=f"errors {proxied.errors}; CPU µs/req {m_proxied.note(proxied.requests)}",
            extra=m_proxied.breakdown(proxied.requests),
        ),
        Row(
            "forwarding",
            "authenticated GET /v1/whoami through the gateway",
            authed.rps,
            authed.p50_ms,
            authed.p99_ms,
            m_authed.total / max(authed.requests, 1) * 1e6,
            ratio=authed.rps / proxied.rps,
            ratio_of="unauthenticated forwarding",
            notes=f"errors {authed.errors}; token verified once, then cached; "
            f"CPU µs/req {m_authed.note(authed.requests)}",
            extra=m_authed.breakdown(authed.requests),
        ),
    ]
