"""Engine metrics scraped from real processes: one ``meshup serve`` running an upgrade with its own
workers; and, on PostgreSQL, an API that runs no worker reporting what separate ``meshup worker``
processes did, a SIGKILLed one's expired lease and the reclaim included."""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import backends
from tests.e2e.test_crash import (
    MASTER_KEY,
    Api,
    Driver,
    Plan,
    StepRun,
    catch_lease,
    crash_seed,
    create_task,
    read_tables,
    single_cluster_setup,
    wait_root,
)
from tests.support.databases import database_url
from tests.support.processes import JobsReader, killing_all, worker_process
from tests.support.server import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    found: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """One label's values of a metric, summed over its other labels."""
    out: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, {}).items():
        out[dict(labels)[label]] += value
    return dict(out)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def scrape_until(url: str, ready: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    """Worker counters reach /metrics with the workers' heartbeats: wait for them."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def leaf_counts(url: str) -> dict[str, int]:
    """Successful leaves (nodes without children) by type, from the database."""
    jobs = read_tables(url)["jobs"]
    parents = {job["parent_id"] for job in jobs}
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        if job["id"] not in parents and job["phase"] == "Success":
            counts[job["type"]] += 1
    return dict(counts)


def check_gauges_match_the_database(samples: Samples, url: str) -> None:
    tables = read_tables(url)
    jobs: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for job in tables["jobs"]:
        jobs[(("phase", job["phase"]), ("type", job["type"]))] += 1
    assert samples["meshup_jobs"] == dict(jobs)
    tasks: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for task in tables["upgrade_tasks"]:
        tasks[(("phase", task["phase"]),)] += 1
    assert samples["meshup_upgrade_tasks"] == dict(tasks)


@pytest.fixture(params=backends())
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(str(request.param), tmp_path) as value:
        yield value


def test_an_upgrade_moves_the_job_gauges_and_engine_counters(url: str, tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(crash_seed({"solo": ("s1",)})))
    server = start_server(
        tmp_path,
        url,
        seed=seed,
        extra_args=["--sim-speed", "0", "--workers", "2"],
        extra_env={"MESHUP_MASTER_KEY": MASTER_KEY, "MESHUP_LEASE_SECONDS": "3", "MESHUP_ACCESS_LOG": "0"},
    )
    api = Api([server])  # type: ignore[list-item]  # the same url and port as an API process
    try:
        idle = scrape(server.url)
        assert value(idle, "meshup_engine_metrics_up") == 1
        assert value(idle, "meshup_workers", state="live") == 1  # its workers beat at start
        assert value(idle, "meshup_workers", state="stale") == 0
        assert idle.get("meshup_engine_claims_total", {}) == {}
        assert value(idle, "meshup_jobs_waiting") == 0
        assert idle.get("meshup_upgrade_tasks", {}) == {}

        created = create_task(api)  # PreCheck
        assert wait_root(api, created["jobId"], 60)["status"]["phase"] == "Success"
        leaves = leaf_counts(url)
        after_check = scrape_until(
            server.url,
            lambda s: by(s, "meshup_engine_step_outcomes_total", "type") and _done(s) == leaves,
        )
        assert _done(after_check) == leaves
        check_counters_agree(after_check)
        check_gauges_match_the_database(after_check, url)
        assert by(after_check, "meshup_upgrade_tasks", "phase") == {"Waiting": 1}  # for the next step

        driver = Driver(Plan("solo", (), "Waiting"), api, task_id=created["taskId"])
        driver.runs.append(StepRun("PreCheck", created["jobId"], True))
        driver.start("ControlPlaneUpgrade", None)
        assert wait_root(api, driver.runs[-1].job_id, 60)["status"]["phase"] == "Success"
        leaves = leaf_counts(url)
        after_upgrade = scrape_until(server.url, lambda s: _done(s) == leaves)
        assert _done(after_upgrade) == leaves
        check_counters_agree(after_upgrade)
        check_gauges_match_the_database(after_upgrade, url)
        claims_before = by(after_check, "meshup_engine_claims_total", "type")
        claims_after = by(after_upgrade, "meshup_engine_claims_total", "type")
        assert sum(claims_after.values()) > sum(claims_before.values())
        assert all(claims_after[kind] >= count for kind, count in claims_before.items())
        assert value(after_upgrade, "meshup_engine_heartbeats_total") > value(
            after_check, "meshup_engine_heartbeats_total"
        )
        assert value(after_upgrade, "meshup_jobs_waiting") == 0
        assert value(after_upgrade, "meshup_jobs_leased") == 0
        assert value(after_upgrade, "meshup_jobs_waiting_oldest_age_seconds") == 0
        assert value(after_upgrade, "meshup_engine_lease_expiries_total") == 0
        assert after_upgrade.get("meshup_engine_reclaims_total", {}) == {}
        # The HTTP metrics are still there beside them.
        assert after_upgrade["meshup_http_requests_total"]
        api.close()
    finally:
        server.stop()


def _done(samples: Samples) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, count in samples.get("meshup_engine_step_outcomes_total", {}).items():
        label = dict(labels)
        if label["outcome"] == "done" and count:
            out[label["type"]] = int(count)
    return out


def check_counters_agree(samples: Samples) -> None:
    """Nothing crashed: every claim ended in one recorded outcome and one run-time observation."""
    claims = by(samples, "meshup_engine_claims_total", "type")
    outcomes = by(samples, "meshup_engine_step_outcomes_total", "type")
    runs = by(samples, "meshup_engine_leaf_run_seconds_count", "type")
    assert claims == outcomes == runs
    errors = {dict(k)["type"] for k, v in samples["meshup_engine_step_outcomes_total"].items() if v}
    assert errors == set(claims)
    assert all(dict(k)["outcome"] in ("done", "wait") for k in samples["meshup_engine_step_outcomes_total"])
    for labels, count in samples["meshup_engine_leaf_run_seconds_bucket"].items():
        if dict(labels)["le"] == "+Inf":
            assert count == runs[dict(labels)["type"]]


@pytest.mark.postgres
def test_api_reports_separate_workers_and_a_killed_workers_expired_lease(tmp_path: Path) -> None:
    with database_url("postgres", tmp_path) as pg_url:
        api_process, api, env = single_cluster_setup(pg_url, tmp_path)  # leases of 2 s
        first = worker_process("worker-a", env, tmp_path, threads=1, sim_speed=1)
        second = worker_process("worker-b", env, tmp_path, threads=1, sim_speed=1)
        with killing_all([api_process, first, second]):
            api_process.start()
            api_process.wait_healthy()
            assert value(scrape(api_process.url), "meshup_workers", state="live") == 0  # serves only
            first.start()
            owner = first.owner()
            created = create_task(api)
            assert wait_root(api, created["jobId"], 30)["status"]["phase"] == "Success"
            leaves = leaf_counts(pg_url)
            checked = scrape_until(api_process.url, lambda s: _done(s) == leaves)
            assert _done(checked) == leaves  # claimed and run in another process
            check_counters_agree(checked)
            assert value(checked, "meshup_workers", state="live") == 1
            run_time = by(checked, "meshup_engine_leaf_run_seconds_sum", "type")
            assert sum(run_time.values()) > 0  # sim-speed 1: the steps took time

            driver = Driver(Plan("solo", (), "Waiting"), api, task_id=created["taskId"])
            driver.runs.append(StepRun("PreCheck", created["jobId"], True))
            driver.start("ControlPlaneUpgrade", None)
            root = driver.runs[-1].job_id
            with closing(JobsReader(pg_url)) as reader:
                _leaf, leaf_type, _attempt = catch_lease(
                    first, reader, root, owner, first.kill, job_type="WaitControlPlaneReady"
                )
            stale = scrape_until(api_process.url, lambda s: value(s, "meshup_workers", state="stale") == 1)
            assert value(stale, "meshup_workers", state="stale") == 1
            assert value(stale, "meshup_workers", state="live") == 0
            assert value(stale, "meshup_jobs_waiting") + value(stale, "meshup_jobs_leased") >= 1

            second.start()
            second.owner()
            assert wait_root(api, root, 45)["status"]["phase"] == "Success"
            taken = scrape_until(
                api_process.url,
                lambda s: (
                    value(s, "meshup_engine_reclaims_total", type=leaf_type) >= 1
                    and value(s, "meshup_engine_lease_expiries_total") >= 1
                ),
            )
            assert value(taken, "meshup_engine_lease_expiries_total") >= 1
            assert value(taken, "meshup_engine_reclaims_total", type=leaf_type) >= 1
            assert value(taken, "meshup_workers", state="live") == 1
            assert value(taken, "meshup_workers", state="stale") == 1

            # A drained worker retires: no longer live, and nothing it counted is lost.
            settled = scrape_until(api_process.url, lambda s: _done(s) == leaf_counts(pg_url))
            second.signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0
            retired = scrape_until(  # once the last scrape's figures (kept ~1 s) are renewed
                api_process.url, lambda s: value(s, "meshup_workers", state="live") == 0
            )
            assert value(retired, "meshup_workers", state="live") == 0
            for name in ("meshup_engine_claims_total", "meshup_engine_step_outcomes_total"):
                for labels, count in settled[name].items():
                    assert retired[name][labels] >= count, (name, labels)
            assert value(retired, "meshup_engine_lease_expiries_total") >= value(
                taken, "meshup_engine_lease_expiries_total"
            )
            api.close()
