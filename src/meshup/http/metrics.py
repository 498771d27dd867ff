"""Prometheus metrics of the HTTP API (one registry per process)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Methods, route templates and statuses are bounded sets; past this, new label sets are dropped.
MAX_LABEL_SETS = 10_000


class _Latency:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.total = 0.0


class _RequestCollector(Collector):
    """Requests by method, route and status, and their durations by route, as plain numbers.

    Counted on the event loop for every request: a prometheus_client child takes a lock per
    increment (three per request with the histogram); here a request is two dictionary lookups
    and three additions, and the registry reads the numbers when it is scraped.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Latency] = {}

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "meshup_http_requests",
            "HTTP requests by route template, method and status.",
            labels=["method", "route", "status"],
        )
        yield HistogramMetricFamily(
            "meshup_http_request_duration_seconds",
            "Time from request start to response end, by route template.",
            labels=["route"],
        )

    def collect(self) -> Iterator[Metric]:
        requests, latency = self.describe()
        assert isinstance(requests, CounterMetricFamily) and isinstance(latency, HistogramMetricFamily)
        for (method, route, status), count in list(self.requests.items()):
            requests.add_metric([method, route, str(status)], count)
        for route, observed in list(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), list(observed.counts), strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            latency.add_metric([route], buckets, observed.total)
        yield requests
        yield latency


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.auth_failures = Counter(
            "meshup_auth_failures",
            "Rejected authentication attempts by reason.",
            ["reason"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        """One finished request (called on the event loop)."""
        self.count(method, route, status)
        latency = self._requests.latency.get(route)
        if latency is None:
            if len(self._requests.latency) >= MAX_LABEL_SETS:
                return
            latency = self._requests.latency.setdefault(route, _Latency())
        latency.counts[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        latency.total += elapsed

    def count(self, method: str, route: str, status: int) -> None:
        """One request, without its duration (a request head refused before it was routed)."""
        requests = self._requests.requests
        key = (method, route, status)
        count = requests.get(key)
        if count is None and len(requests) >= MAX_LABEL_SETS:
            return
        requests[key] = (count or 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)


_REASONS = (
    ("expired", "expired"),
    ("window", "clock_skew"),
    ("x-sdk-date", "date"),
    ("unknown access key", "unknown_key"),
    ("disabled", "disabled"),
    ("signature", "signature"),
    ("security-token", "security_token"),
    ("token", "token"),
    ("no x-auth-token", "missing"),
)


def failure_reason(why: str) -> str:
    """A bounded label for an authentication failure (the message itself is free text)."""
    lowered = why.lower()
    for marker, label in _REASONS:
        if marker in lowered:
            return label
    return "malformed"
