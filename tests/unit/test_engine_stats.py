"""Engine counters and how they add up across worker processes; the scrape-time collector's cache."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshup.engine.stats import (
    RUN_SECONDS_BUCKETS,
    EngineStats,
    combine,
    cumulative_buckets,
    empty,
    total,
    worker_states,
)
from meshup.http.engine_metrics import EngineCollector, EngineFigures

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_stats_count_claims_reclaims_outcomes_and_run_time() -> None:
    stats = EngineStats()
    stats.claimed("PreCheckCluster", after_expiry=False)
    stats.claimed("PreCheckCluster", after_expiry=True)
    stats.outcome("PreCheckCluster", "done")
    stats.outcome("PreCheckCluster", "wait")
    stats.ran("PreCheckCluster", 0.003)
    stats.ran("PreCheckCluster", 1000.0)  # beyond the last finite bucket
    stats.leases_expired(2)
    stats.leases_expired(0)
    stats.heartbeat()
    snapshot = stats.snapshot()
    assert snapshot["claims"] == {"PreCheckCluster": 2}
    assert snapshot["reclaims"] == {"PreCheckCluster": 1}
    assert snapshot["outcomes"] == {"PreCheckCluster": {"done": 1, "wait": 1}}
    assert snapshot["lease_expiries"] == 2
    assert snapshot["heartbeats"] == 1
    histogram = snapshot["run_seconds"]["PreCheckCluster"]
    assert histogram["buckets"] == {"0.005": 1, "+Inf": 1}
    assert histogram["sum"] == 1000.003
    snapshot["claims"]["PreCheckCluster"] = 99  # a snapshot is a copy
    assert stats.snapshot()["claims"] == {"PreCheckCluster": 2}


def test_stats_are_safe_to_count_from_several_threads() -> None:
    stats = EngineStats()

    def work() -> None:
        for _ in range(2000):
            stats.claimed("Work", after_expiry=False)
            stats.ran("Work", 0.01)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot["claims"] == {"Work": 8000}
    assert snapshot["run_seconds"]["Work"]["buckets"] == {"0.01": 8000}


def test_combine_adds_and_subtracts_nested_figures() -> None:
    a = {"claims": {"A": 2}, "lease_expiries": 1, "run_seconds": {"A": {"buckets": {"0.1": 2}, "sum": 0.1}}}
    b = {"claims": {"A": 1, "B": 3}, "heartbeats": 4, "run_seconds": {"A": {"buckets": {"1.0": 1}, "sum": 1}}}
    both = combine(a, b)
    assert both["claims"] == {"A": 3, "B": 3}
    assert both["lease_expiries"] == 1 and both["heartbeats"] == 4
    assert both["run_seconds"]["A"] == {"buckets": {"0.1": 2, "1.0": 1}, "sum": 1.1}
    back = combine(both, b, -1)
    assert back["claims"] == {"A": 2, "B": 0}
    assert back["run_seconds"]["A"]["buckets"] == {"0.1": 2, "1.0": 0}
    assert total([a, b, {}]) == combine(combine(empty(), a), b)
    # Garbage in a stored row (a hand-edited table) counts as zero rather than breaking a scrape.
    assert combine({"claims": {"A": "x"}}, {"claims": {"A": 1}})["claims"] == {"A": 1}


def test_cumulative_buckets_fold_foreign_bounds_into_the_next_current_one() -> None:
    buckets = cumulative_buckets({"0.005": 1, "0.007": 2, "+Inf": 1, "0.3": 4})
    assert [bound for bound, _ in buckets] == list(RUN_SECONDS_BUCKETS)
    as_dict = dict(buckets)
    assert as_dict[0.0025] == 0
    assert as_dict[0.005] == 1
    assert as_dict[0.01] == 3  # 0.007 went to the 0.01 bucket
    assert as_dict[0.25] == 3 and as_dict[0.5] == 7
    assert as_dict[math.inf] == 8


def test_workers_are_live_within_one_lease_and_stale_after() -> None:
    beats = [NOW, NOW - timedelta(seconds=30), NOW - timedelta(seconds=30.5), NOW - timedelta(hours=1)]
    assert worker_states(beats, NOW, live_within=30) == {"live": 2, "stale": 2}
    assert worker_states([], NOW, live_within=30) == {"live": 0, "stale": 0}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def figures(claims: int) -> EngineFigures:
    stats = EngineStats()
    for _ in range(claims):
        stats.claimed("Work", after_expiry=False)
        stats.ran("Work", 0.02)
        stats.outcome("Work", "done")
    return EngineFigures(
        jobs=[("Work", "Success", claims), ("Root", "Running", 1)],
        tasks=[("Running", 1)],
        waiting=3,
        oldest_wait_seconds=12.5,
        leased=2,
        workers={"live": 1, "stale": 1},
        totals=stats.snapshot(),
    )


def test_collector_reads_once_per_ttl_however_many_scrapes() -> None:
    clock = FakeMonotonic()
    reads: list[int] = []

    def read() -> EngineFigures:
        reads.append(1)
        return figures(len(reads))

    collector = EngineCollector(read, ttl=1.0, monotonic=clock)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    assert reads == []  # registering queries nothing
    for _ in range(20):
        assert samples(registry)[("meshup_engine_claims_total", (("type", "Work"),))] == 1
    assert len(reads) == 1
    clock.now += 0.99
    samples(registry)
    assert len(reads) == 1
    clock.now += 0.02
    assert samples(registry)[("meshup_engine_claims_total", (("type", "Work"),))] == 2
    assert len(reads) == 2


def test_collector_exposes_every_engine_metric() -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(lambda: figures(4), monotonic=FakeMonotonic()))
    found = samples(registry)
    assert found[("meshup_engine_metrics_up", ())] == 1
    assert found[("meshup_jobs", (("phase", "Success"), ("type", "Work")))] == 4
    assert found[("meshup_jobs", (("phase", "Running"), ("type", "Root")))] == 1
    assert found[("meshup_upgrade_tasks", (("phase", "Running"),))] == 1
    assert found[("meshup_jobs_waiting", ())] == 3
    assert found[("meshup_jobs_waiting_oldest_age_seconds", ())] == 12.5
    assert found[("meshup_jobs_leased", ())] == 2
    assert found[("meshup_workers", (("state", "live"),))] == 1
    assert found[("meshup_workers", (("state", "stale"),))] == 1
    assert found[("meshup_engine_step_outcomes_total", (("outcome", "done"), ("type", "Work")))] == 4
    assert found[("meshup_engine_lease_expiries_total", ())] == 0
    assert found[("meshup_engine_heartbeats_total", ())] == 0
    assert found[("meshup_engine_leaf_run_seconds_count", (("type", "Work"),))] == 4
    assert found[("meshup_engine_leaf_run_seconds_bucket", (("le", "0.01"), ("type", "Work")))] == 0
    assert found[("meshup_engine_leaf_run_seconds_bucket", (("le", "0.025"), ("type", "Work")))] == 4
    assert found[("meshup_engine_leaf_run_seconds_bucket", (("le", "+Inf"), ("type", "Work")))] == 4
    assert abs(found[("meshup_engine_leaf_run_seconds_sum", (("type", "Work"),))] - 0.08) < 1e-9


def test_an_unreadable_database_shows_as_down_and_is_retried_after_the_ttl() -> None:
    clock = FakeMonotonic()
    healthy = [False]

    def read() -> EngineFigures:
        if not healthy[0]:
            raise OSError("connection refused")
        return figures(1)

    registry = CollectorRegistry(auto_describe=True)
    registry.register(EngineCollector(read, monotonic=clock))
    found = samples(registry)
    assert found[("meshup_engine_metrics_up", ())] == 0
    assert not any(name == "meshup_jobs" for name, _ in found)
    healthy[0] = True
    clock.now += 1.5
    assert samples(registry)[("meshup_engine_metrics_up", ())] == 1
