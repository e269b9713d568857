"""Every business metric of issue 6, scraped from real processes after a real journey.

Through the gateway: OAuth tokens, an SMS verification, an e-card, identity and payment QR
codes (one replayed under its Idempotency-Key), scans (a success, a replay refused, a
forged code), a quote, a settlement and its idempotent replay, a refund and a second one
refused, the holder's enquiry, a second settlement the daily-velocity rule flags, the ledger
check. Then each process's ``/metrics`` must show exactly what was done, by outcome and
region; route labels are templates that carry no id; the ledger imbalance is 0.

Counters are compared as the difference between a scrape before and one after the journey,
so that the other test on the shared cluster (``test_trace``) cannot change them.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from collections import Counter
from collections.abc import Iterable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.cluster import PARTS
from support.journey import BILL, PIN, Gateway, eventually
from support.otlp import TracedCluster

if importlib.util.find_spec("identity.seed") is None:
    pytest.skip("identity's seed-demo is not merged", allow_module_level=True)

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

PUBLIC = ("/v1/", "/oauth/")  # the journey's routes (not probes, scrapes or internal JWKS)
Key = tuple[str, str, frozenset[tuple[str, str]]]  # (process, sample name, labels)


def scrape(urls: dict[str, str]) -> dict[Key, float]:
    """Every sample of every process's ``/metrics``, parsed by prometheus_client."""
    out: dict[Key, float] = {}
    for part, url in urls.items():
        resp = httpx.get(url + "/metrics", timeout=10)
        assert resp.status_code == 200, (part, resp.text)
        assert resp.headers["content-type"].startswith("text/plain")
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                out[(part, sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[Key, float], part: str, name: str, **labels: str) -> float | None:
    return samples.get((part, name, frozenset(labels.items())))


class Delta:
    """``after - before`` of a sample (a sample absent before counts as 0)."""

    def __init__(self, before: dict[Key, float], after: dict[Key, float]) -> None:
        self.before, self.after = before, after

    def __call__(self, part: str, name: str, **labels: str) -> float:
        now = value(self.after, part, name, **labels)
        assert now is not None, f"{part}: no sample {name}{labels}"
        return now - (value(self.before, part, name, **labels) or 0.0)

    def by(self, part: str, name: str, label: str, **fixed: str) -> dict[str, float]:
        """Non-zero changes of ``name`` per value of ``label`` (the other labels as ``fixed``)."""
        out: dict[str, float] = {}
        for (p, n, labels), now in self.after.items():
            d = dict(labels)
            if p != part or n != name or any(d.get(k) != v for k, v in fixed.items()):
                continue
            change = now - (self.before.get((p, n, labels)) or 0.0)
            if change:
                out[d[label]] = out.get(d[label], 0.0) + change
        return out


class CountingGateway(Gateway):
    """The journey's client, counting what the metrics must count."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: Counter[tuple[str, int]] = Counter()  # (method path-template-free, status)
        self.bearers: Counter[str] = Counter()
        self.http.event_hooks["response"].append(self._count)

    def _count(self, response: httpx.Response) -> None:
        request = response.request
        self.calls[(request.method, response.status_code)] += 1
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            self.bearers[auth] += 1


def ids_in(values: Iterable[str], ids: Iterable[str]) -> list[str]:
    return [v for v in values for i in ids if i in v]


def test_every_business_metric_counts_the_journey_exactly(observed: TracedCluster) -> None:
    cluster = observed.cluster
    urls = {part: cluster.url(part) for part in PARTS}
    gw = CountingGateway(cluster)
    before = scrape(urls)

    # Tokens (client credentials through the gateway to identity).
    app = gw.auth(gw.entry("partner_app", 0))
    ops = gw.auth(gw.entry("ops"))
    hospital = gw.auth(gw.entry("hospital", 0))
    holder = gw.holders[1]
    ecard = gw.ecard_with_payment(holder, app, ops)  # verification, e-card, PIN, payment
    card = gw.http.get(f"/v1/ecards/{ecard}", headers=app).json()
    issued_region = str(card["region_code"])
    account = f"/v1/ecards/{ecard}/account"
    eventually(lambda: gw.http.get(account, headers=app).json().get("opened") is True)

    # An identity QR, asked twice under one Idempotency-Key: one code made, one answer replayed.
    key = {"Idempotency-Key": secrets.token_hex(8)}
    identity_qr = gw.http.post(
        f"/v1/ecards/{ecard}/qrcodes", json={"purpose": "identity"}, headers={**app, **key}
    )
    assert identity_qr.status_code == 201, identity_qr.text
    again = gw.http.post(
        f"/v1/ecards/{ecard}/qrcodes", json={"purpose": "identity"}, headers={**app, **key}
    )
    assert again.headers.get("idempotency-replayed") == "true"
    assert again.json()["qr_token"] == identity_qr.json()["qr_token"]

    def scan(qr_token: str, purpose: str) -> httpx.Response:
        return gw.http.post(
            "/v1/scans", json={"qr_token": qr_token, "purpose": purpose}, headers=hospital
        )

    assert scan(identity_qr.json()["qr_token"], "identity").status_code == 201
    payment_qr = gw.payment_qr(ecard, app)
    scanned = scan(payment_qr, "settlement")
    assert scanned.status_code == 201, scanned.text
    assert scan(payment_qr, "settlement").status_code == 409  # the replayed scan
    assert scan("not-a-qr-token", "identity").status_code == 422

    # Quote, settle, replay the settle, refund, refuse a second refund.
    quote = gw.http.post(
        "/v1/settlements/quotes",
        json={
            "settlement_token": scanned.json()["settlement_token"],
            "visit": {"type": "outpatient"},
            "items": BILL,
        },
        headers=hospital,
    )
    assert quote.status_code == 201, quote.text
    region = str(quote.json()["insured_region"])
    settle_key = {"Idempotency-Key": secrets.token_hex(8)}
    body = {"quote_id": quote.json()["quote_id"]}
    settled = gw.http.post("/v1/settlements", json=body, headers={**hospital, **settle_key})
    assert settled.status_code == 201, settled.text
    replayed = gw.http.post("/v1/settlements", json=body, headers={**hospital, **settle_key})
    assert replayed.json() == settled.json()
    sid = settled.json()["settlement_id"]
    refunds = f"/v1/settlements/{sid}/refunds"
    for expected in (201, 409):
        refund = gw.http.post(
            refunds,
            json={"reason": "bill cancelled"},
            headers={**hospital, "Idempotency-Key": secrets.token_hex(8)},
        )
        assert refund.status_code == expected, refund.text
    refused_slug = refund.json()["type"].rsplit("/", 1)[-1]

    # The holder's enquiry.
    assert gw.http.get(account, headers=app).status_code == 200
    history = gw.http.get(f"/v1/ecards/{ecard}/settlements", headers=app)
    assert [i["settlement_id"] for i in history.json()["items"]][:1] == [sid]

    # A second settlement the same day: the daily-velocity rule (limit 1 here) flags it.
    token2 = gw.settlement_token(ecard, app, hospital)
    quote2 = gw.http.post(
        "/v1/settlements/quotes",
        json={"settlement_token": token2, "visit": {"type": "outpatient"}, "items": BILL[:1]},
        headers=hospital,
    )
    assert quote2.status_code == 201, quote2.text
    settled2 = gw.http.post(
        "/v1/settlements",
        json={"quote_id": quote2.json()["quote_id"]},
        headers={**hospital, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert settled2.status_code == 201, settled2.text
    assert settled2.json()["risk_flags"] == ["daily_velocity"]

    check = gw.http.get("/v1/admin/ledger/check", headers=ops)
    assert check.status_code == 200, check.text
    assert check.json()["balanced"] is True, check.text

    # Issuance's webhook outbox drains (the demo apps have no endpoint) before the scrape.
    def drained() -> bool:
        now = scrape({"issuance": urls["issuance"]})
        return value(now, "issuance", "essc_outbox_pending", outbox="webhook") == 0.0

    eventually(drained)
    after = scrape(urls)
    delta = Delta(before, after)

    # Issuance: e-cards by issuing region, QR codes by purpose, scans by outcome, replays.
    assert delta.by("issuance", "essc_ecards_issued_total", "region") == {issued_region: 1}
    assert delta.by("issuance", "essc_qr_issued_total", "purpose") == {"identity": 1, "payment": 2}
    assert delta.by("issuance", "essc_qr_scans_total", "outcome") == {
        "success": 3,
        "already_used": 1,
        "invalid": 1,
    }
    assert delta("issuance", "essc_idempotent_replays_total") == 1
    assert value(after, "issuance", "essc_outbox_lag_seconds", outbox="webhook") == 0.0

    # Settlement: by outcome and insured region, risk alerts by rule, replays, the ledger.
    assert delta.by("settlement", "essc_settlements_total", "outcome", region=region) == {
        "success": 2
    }
    assert delta.by("settlement", "essc_refunds_total", "outcome", region=region) == {
        "success": 1,
        refused_slug: 1,
    }
    assert delta.by("settlement", "essc_risk_alerts_total", "rule") == {"daily_velocity": 1}
    assert delta("settlement", "essc_idempotent_replays_total") == 1
    assert value(after, "settlement", "essc_ledger_imbalance") == 0.0
    for part in ("issuance", "settlement"):
        lag = value(after, part, "essc_outbox_lag_seconds", outbox="identity_events")
        assert lag is not None, part
        assert 0 <= lag < 30, (part, lag)  # a generous bound: the consumer keeps up

    # Gateway: one token-cache miss per token, a hit for every other authenticated call.
    bearers = gw.bearers
    assert delta("gateway", "essc_gateway_token_cache_total", result="miss") == len(bearers)
    assert delta("gateway", "essc_gateway_token_cache_total", result="hit") == (
        sum(bearers.values()) - len(bearers)
    )
    assert delta.by("gateway", "essc_gateway_upstream_errors_total", "kind") == {}
    for upstream in ("identity", "issuance", "settlement"):
        assert value(after, "gateway", "essc_gateway_breaker_state", upstream=upstream) == 0.0

    # HTTP: the gateway counted every call of the journey, by status; by route template.
    # (Public routes only: the services also fetch the gateway's internal JWKS meanwhile.)
    gateway_calls: dict[str, float] = {}
    public = {r for (_p, _n, ls) in after if (r := dict(ls).get("route", "")).startswith(PUBLIC)}
    for route in public:
        changes = delta.by("gateway", "essc_http_requests_total", "status", route=route)
        for status, n in changes.items():
            gateway_calls[status] = gateway_calls.get(status, 0) + n
    journey_calls: Counter[str] = Counter()
    for (_method, status), n in gw.calls.items():
        journey_calls[str(status)] += n
    assert gateway_calls == dict(journey_calls)
    scans = delta.by(
        "gateway", "essc_http_requests_total", "status", route="/v1/scans", method="POST"
    )
    assert scans == {"201": 3, "409": 1, "422": 1}
    # Three codes made and one answered by the idempotency layer, labelled by its route too.
    qr_route = "/v1/ecards/{ecard_id}/qrcodes"
    for part in ("gateway", "issuance"):
        assert delta.by(part, "essc_http_requests_total", "status", route=qr_route) == {"201": 4}
    assert (
        delta(
            "settlement",
            "essc_http_request_duration_seconds_count",
            service="settlement",
            route="/v1/settlements/{settlement_id}/refunds",
            method="POST",
        )
        == 2
    )

    # No label anywhere carries an id of the journey; every route is a template.
    ids = {ecard, sid, quote.json()["quote_id"], settled2.json()["settlement_id"], PIN}
    labels = {v for (_p, _n, ls) in after for _k, v in ls}
    assert ids_in(labels, ids) == []
    routes = {dict(ls)["route"] for (_p, _n, ls) in after if "route" in dict(ls)}
    assert all(r == "unmatched" or r.startswith("/") for r in routes), routes
    assert not [r for r in routes if re.search(r"/[a-z]{1,3}_[A-Za-z0-9_-]{8,}", r)], routes
    new_routes = {
        dict(ls).get("route") for (_p, n, ls) in after if n == "essc_http_requests_total"
    } - {dict(ls).get("route") for (_p, n, ls) in before if n == "essc_http_requests_total"}
    assert "unmatched" not in new_routes
