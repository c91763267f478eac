"""Prometheus metrics with ``prometheus_client``: requests per route, sync traffic, refusals, the process.

Why ``prometheus_client``: latency *histograms* (aggregatable across
processes, unlike the summaries we wrote by hand), the process collector
(CPU, RSS, open file descriptors) and a correct exposition format come with
it.  Each ``Metrics`` has its own ``CollectorRegistry``, so several servers in
one process (tests) never share or collide on counters.  Every family is
registered when the app is built, and the per-route series are created then
too, so ``/metrics`` lists them all before the first request.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# ``*_created`` series (one timestamp per counter) double the output and no dashboard uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The server's metric families, in a registry of their own."""

    def __init__(self, routes: Iterable[str] = ()) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.requests = Counter(
            "realmpy_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "realmpy_request_duration_seconds",
            "Request latency by route (long-polls include their wait)",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "realmpy_errors", "Requests answered with a typed error, by code", ["code"], registry=r
        )
        self.changesets_in = Counter(
            "realmpy_upload_changesets", "Changesets received in uploads", registry=r
        )
        self.ops_in = Counter("realmpy_upload_ops", "Operations received in uploads", registry=r)
        self.objects_out = Counter(
            "realmpy_download_objects", "Objects sent in incremental downloads", registry=r
        )
        self.bootstrap_objects = Counter(
            "realmpy_bootstrap_objects", "Objects sent in bootstrap batches", registry=r
        )
        self.long_polls = Gauge("realmpy_long_polls", "Downloads currently waiting", registry=r)
        self.compensating_writes = Counter(
            "realmpy_compensating_writes",
            "Writes refused by permission rules (undone on the client)",
            registry=r,
        )
        self.rate_limited = Counter(
            "realmpy_rate_limited",
            "Requests refused by a rate limit, by limit",
            ["limit"],
            registry=r,
        )
        self.refused_connections = Counter(
            "realmpy_refused_connections",
            "Connections closed by the transport guard, by reason",
            ["reason"],
            registry=r,
        )
        self.disconnects = Counter(
            "realmpy_client_disconnects",
            "Requests whose client hung up before the answer",
            ["route"],
            registry=r,
        )
        for route in routes:
            self.request_seconds.labels(route)
            self.disconnects.labels(route)
        for limit in ("login_per_account", "login_per_address", "register_per_address", "hashes"):
            self.rate_limited.labels(limit)
        for reason in ("header_timeout", "max_connections"):
            self.refused_connections.labels(reason)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value, 0 if absent (tests)."""
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v
