"""What one engine (one process) has done, and how the workers' figures add up across processes.

Each worker process counts in memory (``EngineStats``) and writes its cumulative figures with its
heartbeat into the ``worker_stats`` table; any API process reports the sum over all rows. A worker
that stops (drained, or silent for longer than the retention) is folded into one ``retired`` row,
so the sums never go down: a restarted worker starts a new row at zero while its predecessor's
figures stay counted. Prometheus therefore never sees these counters reset, and ``rate()`` over a
sum stays right (a sum that dropped would read as a reset and count every other worker's total as
new increase). What a killed worker counted after its last heartbeat is lost.

Snapshots are plain JSON: ``{"claims": {type: n}, "reclaims": {type: n}, "lease_expiries": n,
"heartbeats": n, "outcomes": {type: {outcome: n}}, "run_seconds": {type: {"buckets": {le: n},
"sum": s}}}`` with per-bucket (not cumulative) counts keyed by the bucket's upper bound.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

# Steps are short driver calls (a wait is a reschedule, not a sleep); the tail catches slow clusters.
RUN_SECONDS_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    math.inf,
)

# done / failed / wait: the step's own outcome; error: the step raised; lost: the lease was gone
# when the outcome was to be recorded (another worker has the leaf).
OUTCOMES = ("done", "failed", "wait", "error", "lost")

Snapshot = dict[str, Any]


def bucket_key(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def bucket_bound(key: str) -> float:
    return math.inf if key == "+Inf" else float(key)


class EngineStats:
    """Thread-safe counters of one engine; ``snapshot()`` is what the heartbeat stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: Snapshot = empty()

    def claimed(self, job_type: str, *, after_expiry: bool) -> None:
        with self._lock:
            _add(self._data["claims"], job_type, 1)
            if after_expiry:
                _add(self._data["reclaims"], job_type, 1)

    def leases_expired(self, count: int) -> None:
        if count:
            with self._lock:
                self._data["lease_expiries"] += count

    def heartbeat(self) -> None:
        with self._lock:
            self._data["heartbeats"] += 1

    def outcome(self, job_type: str, outcome: str) -> None:
        with self._lock:
            _add(self._data["outcomes"].setdefault(job_type, {}), outcome, 1)

    def ran(self, job_type: str, seconds: float) -> None:
        key = bucket_key(next(b for b in RUN_SECONDS_BUCKETS if seconds <= b))
        with self._lock:
            histogram = self._data["run_seconds"].setdefault(job_type, {"buckets": {}, "sum": 0.0})
            _add(histogram["buckets"], key, 1)
            histogram["sum"] += seconds

    def snapshot(self) -> Snapshot:
        with self._lock:
            return combine(empty(), self._data)


def empty() -> Snapshot:
    return {
        "claims": {},
        "reclaims": {},
        "lease_expiries": 0,
        "heartbeats": 0,
        "outcomes": {},
        "run_seconds": {},
    }


def combine(a: Mapping[str, Any], b: Mapping[str, Any], sign: int = 1) -> Snapshot:
    """``a + sign * b``, key by key, for nested dicts of numbers (missing keys count as zero)."""
    out: Snapshot = {}
    for key in {*a.keys(), *b.keys()}:
        left, right = a.get(key), b.get(key)
        if isinstance(left, Mapping) or isinstance(right, Mapping):
            out[key] = combine(
                left if isinstance(left, Mapping) else {}, right if isinstance(right, Mapping) else {}, sign
            )
        else:
            out[key] = _number(left) + sign * _number(right)
    return out


def total(snapshots: Iterable[Mapping[str, Any]]) -> Snapshot:
    result = empty()
    for snapshot in snapshots:
        result = combine(result, snapshot)
    return result


def cumulative_buckets(buckets: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Per-bucket counts (any bounds, e.g. from an older version) as cumulative counts over
    ``RUN_SECONDS_BUCKETS``: each count goes to the first current bound at or above its own."""
    counts = [0.0] * len(RUN_SECONDS_BUCKETS)
    for key, count in buckets.items():
        bound = bucket_bound(str(key))
        index = next(i for i, b in enumerate(RUN_SECONDS_BUCKETS) if bound <= b)
        counts[index] += _number(count)
    running = 0.0
    result = []
    for bound, count in zip(RUN_SECONDS_BUCKETS, counts, strict=True):
        running += count
        result.append((bound, running))
    return result


def worker_states(heartbeats: Iterable[datetime], now: datetime, live_within: float) -> dict[str, int]:
    """Live: a heartbeat within ``live_within`` seconds (a worker silent for a whole lease has lost
    its claims); stale: older, not yet retired (killed, hung or cut off from the database)."""
    states = {"live": 0, "stale": 0}
    for heartbeat in heartbeats:
        states["live" if (now - heartbeat).total_seconds() <= live_within else "stale"] += 1
    return states


def _add(counts: dict[str, Any], key: str, amount: float) -> None:
    counts[key] = counts.get(key, 0) + amount


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value
