"""Engine metrics on /metrics: facts of the whole deployment, read from the database at scrape time.

Jobs, upgrade tasks and the runnable backlog are counted in the database; the workers' counters
and run-time histograms are the sums of the ``worker_stats`` rows that every worker process
(``meshup serve`` with workers, and ``meshup worker``) writes with its heartbeat, plus the retired
row of stopped workers (see engine.stats). Any API process therefore reports the same figures
for the deployment, whichever process did the work. One scrape's figures are kept for ``ttl``
seconds, so a flood of scrapes costs one set of queries; the HTTP route renders in a thread, so
the queries never block the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from meshup.clock import Clock
from meshup.engine.stats import OUTCOMES, bucket_key, combine, cumulative_buckets, total, worker_states
from meshup.store import engine as engine_store
from meshup.store import worker_stats
from meshup.store.db import Database
from meshup.timefmt import as_utc

log = logging.getLogger("meshup.metrics")


@dataclass(frozen=True, slots=True)
class EngineFigures:
    jobs: list[tuple[str, str, int]] = field(default_factory=list)
    tasks: list[tuple[str, int]] = field(default_factory=list)
    waiting: int = 0
    oldest_wait_seconds: float = 0.0
    leased: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)


def read_figures(db: Database, now: datetime, live_within: float) -> EngineFigures:
    """One read snapshot of everything the engine metrics show."""
    with db.read() as conn:
        jobs = engine_store.jobs_by_type_and_phase(conn)
        tasks = engine_store.tasks_by_phase(conn)
        backlog = engine_store.backlog(conn, now)
        rows, retired = worker_stats.workers(conn)
    oldest = 0.0
    if backlog.oldest_due is not None:
        oldest = max(0.0, (now - as_utc(backlog.oldest_due)).total_seconds())
    return EngineFigures(
        jobs=jobs,
        tasks=tasks,
        waiting=backlog.waiting,
        oldest_wait_seconds=oldest,
        leased=backlog.leased,
        workers=worker_states((row.heartbeat_at for row in rows), now, live_within),
        totals=combine(total(row.stats for row in rows), retired),
    )


class EngineCollector:
    """A prometheus_client collector; register it on the HTTP metrics registry."""

    def __init__(
        self,
        read: Callable[[], EngineFigures],
        *,
        ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: EngineFigures | None = None
        self._cached_at = 0.0

    @classmethod
    def for_database(cls, db: Database, clock: Clock, *, live_within: float) -> EngineCollector:
        return cls(lambda: read_figures(db, clock.now(), live_within))

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def figures(self) -> EngineFigures | None:
        """This scrape's figures: cached for ``ttl`` seconds; concurrent scrapes wait for one read."""
        with self._lock:
            if self._cached is not None and self._monotonic() - self._cached_at < self._ttl:
                return self._cached
            try:
                self._cached = self._read()
            except Exception as exc:
                log.warning("engine metrics: the database could not be read (%s)", type(exc).__name__)
                self._cached = None
            self._cached_at = self._monotonic()
            return self._cached

    def collect(self) -> Iterator[Metric]:
        figures = self.figures()
        up = GaugeMetricFamily(
            "meshup_engine_metrics_up", "1 when the engine metrics could be read from the database."
        )
        up.add_metric([], 0 if figures is None else 1)
        yield up
        if figures is not None:
            yield from families(figures)


def families(figures: EngineFigures) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("meshup_jobs", "Job tree nodes by type and phase.", labels=["type", "phase"])
    for job_type, phase, count in figures.jobs:
        jobs.add_metric([job_type, phase], count)
    yield jobs
    tasks = GaugeMetricFamily("meshup_upgrade_tasks", "Upgrade tasks by phase.", labels=["phase"])
    for phase, count in figures.tasks:
        tasks.add_metric([phase], count)
    yield tasks
    yield GaugeMetricFamily(
        "meshup_jobs_waiting", "Runnable leaves due now that no worker holds.", value=figures.waiting
    )
    yield GaugeMetricFamily(
        "meshup_jobs_waiting_oldest_age_seconds",
        "How long the longest-waiting runnable leaf has been due (0 when none waits).",
        value=figures.oldest_wait_seconds,
    )
    yield GaugeMetricFamily(
        "meshup_jobs_leased", "Runnable leaves a worker holds a live lease on.", value=figures.leased
    )
    workers = GaugeMetricFamily(
        "meshup_workers",
        "Worker processes by heartbeat age: live within one lease, stale beyond (until retired).",
        labels=["state"],
    )
    for state in ("live", "stale"):
        workers.add_metric([state], figures.workers.get(state, 0))
    yield workers
    yield from _counters(figures.totals)


def _counters(totals: dict[str, Any]) -> Iterator[Metric]:
    claims = CounterMetricFamily(
        "meshup_engine_claims", "Leaves claimed by workers, by job type.", labels=["type"]
    )
    for job_type, count in sorted(dict(totals.get("claims", {})).items()):
        claims.add_metric([job_type], count)
    yield claims
    reclaims = CounterMetricFamily(
        "meshup_engine_reclaims",
        "Leaves claimed again after the reaper released an expired lease, by job type.",
        labels=["type"],
    )
    for job_type, count in sorted(dict(totals.get("reclaims", {})).items()):
        reclaims.add_metric([job_type], count)
    yield reclaims
    yield CounterMetricFamily(
        "meshup_engine_lease_expiries",
        "Expired leases: released by a reaper, or taken over by a claim first (a worker died or stalled).",
        value=totals.get("lease_expiries", 0),
    )
    yield CounterMetricFamily(
        "meshup_engine_heartbeats", "Worker heartbeats written.", value=totals.get("heartbeats", 0)
    )
    outcomes = CounterMetricFamily(
        "meshup_engine_step_outcomes",
        "Step runs by job type and outcome (" + ", ".join(OUTCOMES) + ").",
        labels=["type", "outcome"],
    )
    for job_type, counts in sorted(dict(totals.get("outcomes", {})).items()):
        for outcome, count in sorted(dict(counts).items()):
            outcomes.add_metric([job_type, outcome], count)
    yield outcomes
    run = HistogramMetricFamily(
        "meshup_engine_leaf_run_seconds", "Time a leaf's step took to run, by job type.", labels=["type"]
    )
    for job_type, histogram in sorted(dict(totals.get("run_seconds", {})).items()):
        buckets = cumulative_buckets(dict(histogram.get("buckets", {})))
        run.add_metric(
            [job_type],
            [(bucket_key(bound), count) for bound, count in buckets],
            sum_value=float(histogram.get("sum", 0.0)),
        )
    yield run
