"""One settlement through the gateway is one trace across four processes (issue 6).

The cluster exports OTLP/HTTP to a receiver in the test (``support.otlp``). The settle
request enters the gateway with the caller's ``traceparent``; the trace must hold the
gateway's server and client spans, settlement's server span as the gateway client span's
child, issuance's redemption of the settlement token as the child of settlement's client
span, and database statements under settlement and issuance, each linked to its parent in
the same trace.
"""

from __future__ import annotations

import importlib.util
import secrets

import pytest

from support.journey import BILL, Gateway, eventually
from support.otlp import Span, TracedCluster

if importlib.util.find_spec("identity.seed") is None:
    pytest.skip("identity's seed-demo is not merged", allow_module_level=True)

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

SERVER, CLIENT = 2, 3  # OTLP SpanKind values
SQL = {"SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "WITH"}


def is_db(span: Span) -> bool:
    """A statement span of the SQLAlchemy instrumentation (named by its SQL verb)."""
    return span.kind == CLIENT and span.name.split(" ", 1)[0] in SQL


def test_one_settlement_is_one_trace_across_processes(observed: TracedCluster) -> None:
    cluster = observed.cluster
    receiver = observed.traces
    gw = Gateway(cluster)
    app = gw.auth(gw.entry("partner_app", 0))
    ops = gw.auth(gw.entry("ops"))
    hospital = gw.auth(gw.entry("hospital", 0))
    ecard = gw.ecard_with_payment(gw.holders[2], app, ops)
    account = f"/v1/ecards/{ecard}/account"
    eventually(lambda: gw.http.get(account, headers=app).json().get("opened") is True)
    token = gw.settlement_token(ecard, app, hospital)
    quote = gw.http.post(
        "/v1/settlements/quotes",
        json={"settlement_token": token, "visit": {"type": "outpatient"}, "items": BILL},
        headers=hospital,
    )
    assert quote.status_code == 201, quote.text

    # The caller starts the trace: its traceparent names the trace and the parent span.
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    settled = gw.http.post(
        "/v1/settlements",
        json={"quote_id": quote.json()["quote_id"]},
        headers={
            **hospital,
            "Idempotency-Key": secrets.token_hex(8),
            "traceparent": f"00-{trace_id}-{caller_span}-01",
        },
    )
    assert settled.status_code == 201, settled.text

    # Each process exports in batches, a span once it ends (the server span last): wait for
    # the server spans of all three and the statements of both services with a database.
    # Settlement's money path sends its statements to the asyncpg connection itself
    # (settlement.rawsql): they must be traced all the same (shared.tracing).
    def complete() -> bool:
        spans = receiver.trace(trace_id)
        servers = {s.service for s in spans if s.kind == SERVER}
        statements = {s.service for s in spans if is_db(s)}
        return servers >= {"essc-gateway", "essc-settlement", "essc-issuance"} and (
            statements >= {"essc-settlement", "essc-issuance"}
        )

    try:
        eventually(complete, timeout=30)
    except AssertionError:
        got = [(s.service, s.kind, s.name, s.parent_id) for s in receiver.trace(trace_id)]
        raise AssertionError(f"the trace is incomplete: {got}") from None
    spans = receiver.trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "span ids repeat"

    def one(service: str, kind: int, route: str | None = None) -> Span:
        found = [
            s
            for s in spans
            if s.service == service
            and s.kind == kind
            and (route is None or s.attributes.get("http.route") == route)
        ]
        assert len(found) == 1, (service, kind, route, [(s.service, s.name) for s in spans])
        return found[0]

    gateway = one("essc-gateway", SERVER, "/v1/settlements")
    assert gateway.parent_id == caller_span
    assert gateway.name == "POST /v1/settlements"
    gateway_out = one("essc-gateway", CLIENT)
    assert gateway_out.parent_id == gateway.span_id

    settlement = one("essc-settlement", SERVER, "/v1/settlements")
    assert settlement.parent_id == gateway_out.span_id  # across the process boundary

    # Settlement redeems the settlement token at issuance: its client span, issuance's server.
    redeem_out = [s for s in spans if s.service == "essc-settlement" and s.kind == CLIENT]
    redeem_out = [s for s in redeem_out if not is_db(s)]
    assert len(redeem_out) == 1, [(s.name, s.attributes) for s in redeem_out]
    assert redeem_out[0].parent_id == settlement.span_id
    issuance = one("essc-issuance", SERVER)
    assert issuance.parent_id == redeem_out[0].span_id
    assert "settlement-token" in (issuance.attributes.get("http.route") or issuance.name)

    # Database statements: under each service's server span, in the same trace.
    for service, server in (("essc-settlement", settlement), ("essc-issuance", issuance)):
        statements = [s for s in spans if s.service == service and is_db(s)]
        assert statements, service
        for statement in statements:
            chain = statement
            while chain.parent_id and chain.parent_id in by_id and chain is not server:
                chain = by_id[chain.parent_id]
            assert chain is server, (service, statement.name)

    # Every span but the gateway's server span has its parent inside the trace.
    orphans = [s for s in spans if s is not gateway and s.parent_id not in by_id]
    assert orphans == [], [(s.service, s.name) for s in orphans]
    # Names and routes are templates: no id of the journey in any of them.
    sid = settled.json()["settlement_id"]
    assert not [s.name for s in spans if sid in s.name or ecard in s.name]
