"""Prometheus metrics of the HTTP API (one registry per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "meshup_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meshup_http_request_duration_seconds",
            "Time from request start to response end, by route template.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "meshup_auth_failures",
            "Rejected authentication attempts by reason.",
            ["reason"],
            registry=self.registry,
        )

        # The labelled children, found once: prometheus_client's labels() takes a lock and
        # validates its arguments each time, a few µs on every request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        """One finished request."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(route))
            if len(self._children) < 10_000:  # methods, templates and statuses are bounded sets
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

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
