"""Prometheus metrics: one registry per app, HTTP metrics by route template, the /metrics body.

Each app factory builds its own :class:`Metrics` (never the process-global
registry), so that several apps in one test process do not collide. Labels are
route templates (``/v1/ecards/{ecard_id}``) and never raw paths, which carry ids.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The registry of one service and its HTTP instruments.

    Services add their business instruments with :meth:`counter`, :meth:`gauge`
    and :meth:`histogram`, all prefixed ``essc_``.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "essc_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "essc_http_request_duration_seconds",
            "HTTP request duration by route template and method.",
            ["service", "route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            "essc_http_requests_in_flight",
            "Requests being served.",
            ["service"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}
        self._replays: Counter | None = None
        self._outbox_lag: Gauge | None = None
        self._feeds: dict[str, FeedLag] = {}

    def counter(self, name: str, doc: str, labels: list[str] | None = None) -> Counter:
        """A counter registered on this service's registry."""
        return Counter(name, doc, labels or [], registry=self.registry)

    def gauge(self, name: str, doc: str, labels: list[str] | None = None) -> Gauge:
        """A gauge registered on this service's registry."""
        return Gauge(name, doc, labels or [], registry=self.registry)

    def histogram(self, name: str, doc: str, labels: list[str] | None = None) -> Histogram:
        """A histogram registered on this service's registry."""
        return Histogram(name, doc, labels or [], buckets=_BUCKETS, registry=self.registry)

    def idempotent_replays(self) -> Counter:
        """``essc_idempotent_replays_total``, registered on first use (services with keys)."""
        if self._replays is None:
            self._replays = self.counter(
                "essc_idempotent_replays_total", "Answers replayed for a reused Idempotency-Key."
            )
        return self._replays

    def outbox_lag(self) -> Gauge:
        """``essc_outbox_lag_seconds{outbox}``, registered on first use."""
        if self._outbox_lag is None:
            self._outbox_lag = self.gauge(
                "essc_outbox_lag_seconds",
                "Age of the oldest event not yet delivered, by outbox.",
                ["outbox"],
            )
        return self._outbox_lag

    def feed_lag(self, outbox: str) -> FeedLag:
        """The lag of this process as a consumer of a pull feed (see :class:`FeedLag`)."""
        feed = self._feeds.get(outbox)
        if feed is None:
            feed = self._feeds[outbox] = FeedLag(self.outbox_lag(), outbox)
        return feed

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request (children cached: this runs on every request)."""
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.http_requests.labels(self.service, route, method, str(status))
            self._request_children[key] = child
        child.inc()
        dkey = (route, method)
        hist = self._duration_children.get(dkey)
        if hist is None:
            hist = self.http_duration.labels(self.service, route, method)
            self._duration_children[dkey] = hist
        hist.observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every metric of this service."""
        return generate_latest(self.registry)


class FeedLag:
    """``essc_outbox_lag_seconds{outbox}`` seen from a consumer that polls a feed.

    The consumer cannot see the producer's table, so the lag is the time since it last
    reached the end of the feed (or found another replica holding the feed): an upper
    bound on the age of the oldest event it has not applied. It stays near the poll
    period while the consumer keeps up and grows while the feed fails or a backlog drains.
    Read at scrape time.
    """

    def __init__(self, gauge: Gauge, outbox: str) -> None:
        self._caught_up_at = time.monotonic()
        gauge.labels(outbox).set_function(lambda: time.monotonic() - self._caught_up_at)

    def caught_up(self) -> None:
        """Record that the consumer has just reached the end of the feed."""
        self._caught_up_at = time.monotonic()
