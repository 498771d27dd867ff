"""Crash tests with real processes: API servers and workers over one database, killed with signals.

1. Five canary upgrades at once through two API servers, step by step, while a killer SIGKILLs a
   random worker at random moments (and restarts it) and once kills an API server mid-request.
   What an acknowledged request started must finish: every step's job reaches Success, no job is
   left Running or leased, each step ran as one job, and the simulated clusters end in exactly the
   state the jobs report (upgraded meshes on the new revision, rolled-back meshes as they were).
2. A worker killed while it holds a lease: the lease expires and another worker finishes the step.
3. SIGTERM drains a worker: what it has in flight is recorded, it exits 0 and holds no lease.

The killer's random choices come from a seed printed with the run's numbers (``pytest -s``);
``MESHUP_CRASH_SEED`` repeats them (the timing of the processes is never the same twice).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from meshup.iam.signing import sign
from meshup.store import tables as t
from meshup.store.db import normalise_url
from tests.support.databases import database_url
from tests.support.processes import (
    ApiProcess,
    JobsReader,
    MeshupProcess,
    killing_all,
    meshup_env,
    worker_process,
)

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKCRASHTESTROOT00001", "CrashTestSecretKey0000000000000000000001"
MASTER_KEY = "crash-test-master-key-0123456789abcdefghij"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
SOURCE_REV, TARGET_REV = "1-15-7-r1", "1-18-7-r5"
INJECTION, REVISION = "istio-injection", "istio.io/rev"
LEASE = 2.0
STEP_DEADLINE = 90.0
MIN_KILLS = 10
KILLS_WAIT = 60.0  # seconds the last step of each upgrade waits for MIN_KILLS kills at most
SIM_SPEED = 0.2  # steps take tens of milliseconds to a second: kills land mid-step
NODES = {"count": 6, "cpu": "8", "memory": "32Gi", "masterLabelled": 3}


# -- seed -----------------------------------------------------------------------------------------


def _cluster(cluster_id: str, *, big: bool) -> dict[str, Any]:
    """``big``: three namespaces (two injected, one not); else one injected by revision label."""
    if big:
        namespaces = [
            {
                "name": "shop",
                "labels": {INJECTION: "enabled"},
                "workloads": [{"name": "cart", "replicas": 3}, {"name": "web"}, {"name": "api"}],
            },
            {
                "name": "payments",
                "labels": {INJECTION: "enabled", "team": "pay"},
                "workloads": [{"name": "ledger", "replicas": 2}, {"name": "audit"}],
            },
            {"name": "tools", "labels": {}, "workloads": [{"name": "debug"}]},
        ]
    else:
        namespaces = [
            {
                "name": "shop",
                "labels": {REVISION: SOURCE_REV},
                "workloads": [{"name": "cart", "replicas": 2}, {"name": "web"}],
            }
        ]
    return {"id": cluster_id, "kubernetesVersion": "1.28", "nodes": NODES, "namespaces": namespaces}


def crash_seed(meshes: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """One account; per mesh name its clusters (first one big, the others small)."""
    clusters = [_cluster(cid, big=index == 0) for ids in meshes.values() for index, cid in enumerate(ids)]
    return {
        "accounts": [
            {
                "name": "acme",
                "projects": [{"name": "cn-north-4", "id": PROJECT}],
                "users": [{"name": "root", "root": True, "accessKeys": [{"ak": AK, "sk": SK}]}],
                "clusters": clusters,
                "meshes": [
                    {
                        "name": name,
                        "id": mesh_id(name),
                        "project": "cn-north-4",
                        "version": SOURCE,
                        "clusters": list(ids),
                    }
                    for name, ids in meshes.items()
                ],
            }
        ]
    }


def mesh_id(name: str) -> str:
    number = int.from_bytes(name.encode()[:6].ljust(6, b"\0"), "big")
    return f"c4a5e000-0000-4000-8000-{number:012x}"


# -- signed HTTP against two API processes ----------------------------------------------------------


@dataclass
class Traffic:
    """Writes in flight per API server, shared by the clients (the API kill aims at one)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    writes: dict[int, int] = field(default_factory=dict)

    def add(self, port: int, delta: int) -> None:
        with self.lock:
            self.writes[port] = self.writes.get(port, 0) + delta

    def busy(self, port: int) -> bool:
        with self.lock:
            return self.writes.get(port, 0) > 0


class Api:
    """AK/SK-signed calls, alternating between the API processes (the other one when one is down)."""

    def __init__(self, apis: list[ApiProcess], traffic: Traffic | None = None) -> None:
        self.apis = apis
        self.traffic = traffic or Traffic()
        self._turn = itertools.count()
        self._client = httpx.Client(timeout=10)
        self._avoid_until: dict[int, float] = {}  # port -> when to try a server that failed again
        self.lost = 0  # calls whose connection failed (a killed API server)
        self.lost_writes = 0

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response | None:
        """The response, or None when the connection failed (the request may or may not have run)."""
        turn = next(self._turn)
        rotation = [self.apis[(turn + i) % len(self.apis)] for i in range(len(self.apis))]
        now = time.monotonic()
        api = next((a for a in rotation if self._avoid_until.get(a.port, 0.0) <= now), rotation[0])
        content = b"" if body is None else json.dumps(body).encode()
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Host": f"127.0.0.1:{api.port}", "X-Sdk-Date": date, "Content-Type": "application/json"}
        headers["Authorization"] = sign(method, path, headers, content, AK, SK, sdk_date=date)
        write = method != "GET"
        if write:
            self.traffic.add(api.port, 1)
        try:
            return self._client.request(method, api.url + path, headers=headers, content=content)
        except httpx.TransportError:
            self._avoid_until[api.port] = time.monotonic() + 0.5
            self.lost += 1
            self.lost_writes += 1 if write else 0
            return None
        finally:
            if write:
                self.traffic.add(api.port, -1)

    def read(self, path: str, deadline: float) -> dict[str, Any]:
        """GET until a 200 (reads are safe to repeat)."""
        while True:
            response = self.call("GET", path)
            if response is not None and response.status_code == 200:
                return dict(response.json())
            if response is not None and response.status_code not in (500, 502, 503, 504):
                raise AssertionError(f"GET {path}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {path}: no answer before the deadline")
            time.sleep(0.1)


# -- one mesh's upgrade, driven step by step --------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    mesh: str
    steps: tuple[tuple[str, tuple[str, ...] | None], ...]  # (step, namespaces) after the PreCheck
    outcome: str  # Completed | RolledBack


@dataclass
class StepRun:
    step: str
    job_id: str
    acknowledged: bool  # a 2xx answer; otherwise found applied after a lost answer
    seconds: float = 0.0


@dataclass
class Driver:
    plan: Plan
    api: Api
    # Set once enough workers were killed; the last step waits for it, so that however fast this
    # machine is, the kills land while upgrades still have work in flight.
    enough_kills: threading.Event = field(default_factory=threading.Event)
    runs: list[StepRun] = field(default_factory=list)
    task_id: str = ""
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        self.create()
        self._wait(self.runs[-1])
        for index, (step, namespaces) in enumerate(self.plan.steps):
            if index == len(self.plan.steps) - 1:
                self.enough_kills.wait(KILLS_WAIT)
            self.start(step, namespaces)
            self._wait(self.runs[-1])
        task = self.api.read(self._task_path, time.monotonic() + 30)
        assert task["status"]["phase"] == self.plan.outcome, task

    @property
    def _task_path(self) -> str:
        return f"/v1/{PROJECT}/mesh-upgrade/{self.task_id}"

    def create(self) -> None:
        """POST the task (its PreCheck starts at once); retried until it is known to exist."""
        body = {
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": f"{self.plan.mesh}-to-1-18"},
            "spec": {
                "meshId": mesh_id(self.plan.mesh),
                "upgradeStrategy": "Canary",
                "targetVersion": TARGET,
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        }
        deadline = time.monotonic() + 30
        lost = False
        while time.monotonic() < deadline:
            response = self.api.call("POST", f"/v1/{PROJECT}/mesh-upgrade", body)
            if response is not None and response.status_code == 201:
                task = response.json()
                self.task_id = task["metadata"]["uid"]
                self.runs.append(StepRun("PreCheck", task["status"]["jobId"], True))
                return
            if response is not None and response.status_code == 409 and lost:
                # An earlier attempt whose answer was lost did create the task.
                found = re.search(r"active upgrade task ([0-9a-f-]{36})", response.text)
                assert found, response.text
                self.task_id = found.group(1)
                task = self.api.read(self._task_path, deadline)
                self.runs.append(StepRun("PreCheck", task["status"]["jobId"], False))
                return
            if response is not None and response.status_code not in (500, 502, 503, 504):
                raise AssertionError(f"create {self.plan.mesh}: {response.status_code} {response.text}")
            lost = True
            time.sleep(0.1)
        raise AssertionError(f"create {self.plan.mesh}: no answer within 30s")

    def start(self, step: str, namespaces: tuple[str, ...] | None) -> None:
        """PUT the next step; retried until it is known to have started exactly once."""
        current: dict[str, Any] = {"step": step}
        if namespaces is not None:
            current["namespaces"] = list(namespaces)
        body = {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}
        previous = self.runs[-1].job_id
        deadline = time.monotonic() + 30
        lost = False  # an attempt got no answer or a server error: it may have run all the same
        while time.monotonic() < deadline:
            response = self.api.call("PUT", self._task_path, body)
            if response is not None and response.status_code == 200:
                task = response.json()
                assert task["status"]["step"] == step and task["status"]["jobId"] != previous, task
                self.runs.append(StepRun(step, task["status"]["jobId"], True))
                return
            if response is not None and response.status_code not in (409, 500, 502, 503, 504):
                raise AssertionError(f"{self.plan.mesh} {step}: {response.status_code} {response.text}")
            # This attempt too may have been applied when its answer was lost or a 5xx.
            lost = lost or response is None or response.status_code >= 500
            task = self.api.read(self._task_path, deadline)
            if task["status"]["jobId"] != previous:  # an attempt whose answer was lost started the step
                assert lost and task["status"]["step"] == step, (response and response.text, task)
                self.runs.append(StepRun(step, task["status"]["jobId"], False))
                return
            if response is not None and response.status_code == 409:
                raise AssertionError(f"{self.plan.mesh} {step}: 409 {response.text}")
            lost = True
            time.sleep(0.1)
        raise AssertionError(f"{self.plan.mesh} {step}: no answer within 30s")

    def _wait(self, run: StepRun) -> None:
        started = time.monotonic()
        deadline = started + STEP_DEADLINE
        while True:
            job = self.api.read(f"/v1/{PROJECT}/mesh-job/{run.job_id}", deadline)
            phase = job["status"]["phase"]
            if phase in ("Success", "Failed"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.plan.mesh} {run.step} job {run.job_id} still {phase} after {STEP_DEADLINE}s"
                )
            time.sleep(0.15)
        run.seconds = time.monotonic() - started
        assert phase == "Success", f"{self.plan.mesh} {run.step}: {job['status']['reason']}"
        task = self.api.read(self._task_path, deadline)
        assert task["status"]["phase"] != "Running", task  # told in the job's own transaction


# -- reading the database -------------------------------------------------------------------------


def read_tables(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return {
                table.name: [dict(row._mapping) for row in conn.execute(select(table))]
                for table in (t.jobs, t.clusters, t.meshes, t.upgrade_tasks)
            }
    finally:
        engine.dispose()


def documents(tables: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: dict(row["state"]) for row in tables["clusters"]}


def sidecars(document: dict[str, Any]) -> dict[str, str | None]:
    return {
        f"{ns['name']}/{w['name']}": w.get("sidecarVersion")
        for ns in document["namespaces"]
        for w in ns.get("workloads", [])
    }


def check_jobs_settled(jobs: list[dict[str, Any]]) -> None:
    """Nothing left running, queued or leased; every node of every tree succeeded exactly once."""
    stuck = [(j["type"], j["phase"]) for j in jobs if j["phase"] != "Success"]
    assert stuck == [], f"jobs not Success: {stuck}"
    leased = [(j["type"], j["lease_owner"]) for j in jobs if j["lease_owner"] or j["lease_expires_at"]]
    assert leased == [], f"leases still held: {leased}"
    assert [j["type"] for j in jobs if j["runnable"]] == []
    children: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if job["parent_id"] is not None:
            children.setdefault(job["parent_id"], []).append(job)
    for job in jobs:
        assert job["started_at"] is not None and job["completed_at"] is not None, job["id"]
        assert job["started_at"] <= job["completed_at"], job["id"]
        kids = sorted(children.get(job["id"], []), key=lambda j: j["position"])
        if not kids:  # a leaf: claimed at least once, finished once with its step's result
            assert job["attempt"] >= 1 and job["result"] is not None, job["id"]
            continue
        assert job["completed_at"] >= max(k["completed_at"] for k in kids), job["id"]
        if not (job["payload"] or {}).get("parallel"):
            # In order even across crashes: no child started before the one before it finished.
            for before, after in itertools.pairwise(kids):
                assert after["started_at"] >= before["completed_at"], (before["type"], after["type"])


def check_upgraded(document: dict[str, Any], cluster: str) -> None:
    control = document["controlPlane"]
    assert set(control["revisions"]) == {TARGET_REV}, cluster
    assert control["defaultRevision"] == TARGET_REV, cluster
    assert {g["revision"] for g in document["gateways"]} == {TARGET_REV}, cluster
    for namespace in document["namespaces"]:
        labels = namespace["labels"]
        versions = {w.get("sidecarVersion") for w in namespace["workloads"]}
        if namespace["name"] == "tools":  # never injected, never touched
            assert labels == {} and versions == {None}, (cluster, namespace)
            continue
        assert labels.get(REVISION) == TARGET_REV and INJECTION not in labels, (cluster, namespace)
        assert "previousInjection" not in namespace, (cluster, namespace)
        assert versions == {TARGET}, (cluster, namespace)


def check_outcome(
    tables: dict[str, list[dict[str, Any]]],
    plans: list[Plan],
    drivers: list[Driver],
    clusters_of: dict[str, tuple[str, ...]],
    before: dict[str, dict[str, Any]],
) -> None:
    check_jobs_settled(tables["jobs"])
    after = documents(tables)
    tasks = {row["id"]: row for row in tables["upgrade_tasks"]}
    meshes = {row["id"]: row for row in tables["meshes"]}
    for plan, driver in zip(plans, drivers, strict=True):
        mid = mesh_id(plan.mesh)
        task = tasks[driver.task_id]
        # One job per step the client started, none from a retried or refused request.
        assert [(h["step"], h["jobId"], h["phase"]) for h in task["history"]] == [
            (run.step, run.job_id, "Success") for run in driver.runs
        ]
        roots = {j["id"] for j in tables["jobs"] if j["mesh_id"] == mid and j["parent_id"] is None}
        assert roots == {run.job_id for run in driver.runs}, plan.mesh
        assert task["phase"] == plan.outcome and task["active_mesh_id"] is None
        mesh = meshes[mid]
        expected_version = TARGET if plan.outcome == "Completed" else SOURCE
        assert (mesh["phase"], mesh["version"]) == ("Running", expected_version), plan.mesh
        for cluster in clusters_of[plan.mesh]:
            if plan.outcome == "Completed":
                check_upgraded(after[cluster], cluster)
            else:
                assert after[cluster] == before[cluster], cluster
        # What the leaves report is what the clusters show.
        restarted: dict[tuple[str, str], set[str]] = {}
        for job in tables["jobs"]:
            if job["mesh_id"] == mid and job["type"] == "RestartWorkloads":
                payload, result = job["payload"], job["result"]
                assert result["version"] == payload["version"], job["id"]
                key = (payload["cluster"], payload["namespace"])
                restarted.setdefault(key, set()).update(result["workloads"])
        for (cluster, namespace), names in restarted.items():
            document = next(ns for ns in after[cluster]["namespaces"] if ns["name"] == namespace)
            assert names == {w["name"] for w in document["workloads"]}, (cluster, namespace)


# -- 1. many upgrades while workers (and an API server) are killed ------------------------------------


@dataclass
class Killer:
    """SIGKILLs a random worker at random moments and restarts it at once; every other kill waits
    (briefly) for the worker to hold a lease, so that some kills surely land in the middle of a
    step. Once, it kills an API server while a write request is in flight to it, and restarts it."""

    workers: list[MeshupProcess]
    api: ApiProcess
    traffic: Traffic
    reader: JobsReader
    rng: random.Random
    kill_api_after: int
    kills: int = 0
    orphaning_kills: int = 0  # kills that left leases behind, to expire and be taken over
    orphaned_leases: int = 0
    api_kills: int = 0
    enough_kills: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(0.25, 0.85)):
                worker = self.rng.choice(self.workers)
                owner = worker.owner_if_started()
                if owner is not None and self.kills % 2 == 1:
                    stop_holding_lease(worker, self.reader, owner, timeout=0.4)
                worker.kill()
                self.kills += 1
                if owner is not None:
                    held = self.reader.query("SELECT count(*) FROM jobs WHERE lease_owner = ?", owner)[0][0]
                    self.orphaning_kills += 1 if held else 0
                    self.orphaned_leases += int(held)
                worker.start()  # at once, so that progress continues
                if self.kills >= MIN_KILLS:
                    self.enough_kills.set()
                if self.kills == self.kill_api_after:
                    self._kill_api()
        except BaseException as exc:
            self.error = exc

    def _kill_api(self) -> None:
        deadline = time.monotonic() + 5
        while not self.traffic.busy(self.api.port) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(self.rng.uniform(0, 0.01))
        if self.api.alive:
            self.api.signal(signal.SIGSTOP)  # freeze the request where it is: committed or not
        self.api.kill()
        self.api_kills += 1
        self.api.start()


MESHES = {
    "alpha": ("a1", "a2"),
    "bravo": ("b1", "b2"),
    "charlie": ("c1", "c2"),
    "delta": ("d1", "d2"),
    "echo": ("e1", "e2"),
}
CP, DP, COMPLETE, ROLLBACK = "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete", "Rollback"
PLANS = [
    Plan("alpha", ((CP, None), (DP, ("shop",)), (DP, None), (COMPLETE, None)), "Completed"),
    Plan("bravo", ((CP, None), (DP, None), (COMPLETE, None)), "Completed"),
    Plan("charlie", ((CP, None), (DP, ("payments",)), (ROLLBACK, None)), "RolledBack"),
    Plan("delta", ((CP, None), (DP, ("payments",)), (DP, ("shop",)), (COMPLETE, None)), "Completed"),
    Plan("echo", ((CP, None), (DP, ("shop",)), (ROLLBACK, None)), "RolledBack"),
]


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as value:
        yield value


def test_upgrades_survive_killed_workers_and_api(url: str, tmp_path: Path) -> None:
    seed_value = int(os.environ.get("MESHUP_CRASH_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed_value)
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(crash_seed(MESHES)))
    env = meshup_env(url, MASTER_KEY, lease_seconds=LEASE, MESHUP_ACCESS_LOG="0")
    apis = [ApiProcess("api-1", env, tmp_path, seed=seed), ApiProcess("api-2", env, tmp_path)]
    workers = [worker_process(f"worker-{n}", env, tmp_path, threads=2, sim_speed=SIM_SPEED) for n in (1, 2)]
    started = time.monotonic()
    with ExitStack() as stack:
        stack.enter_context(killing_all([*apis, *workers]))
        apis[0].start()
        apis[0].wait_healthy()  # migrated and seeded before anyone else starts
        apis[1].start()
        for worker in workers:
            worker.start()
        apis[1].wait_healthy()
        before = documents(read_tables(url))
        traffic = Traffic()
        enough_kills = threading.Event()
        drivers = [Driver(plan, Api(apis, traffic), enough_kills) for plan in PLANS]
        reader = stack.enter_context(closing(JobsReader(url)))
        killer = Killer(
            workers,
            apis[0],
            traffic,
            reader,
            rng,
            kill_api_after=rng.randint(2, 6),
            enough_kills=enough_kills,
        )
        threads = [threading.Thread(target=d.run, name=d.plan.mesh, daemon=True) for d in drivers]
        killer_thread = threading.Thread(target=killer.run, name="killer", daemon=True)

        def stop_killer() -> None:  # before the processes are killed: it must restart none after
            killer.stop.set()
            killer_thread.join(30)

        killer_thread.start()
        stack.callback(stop_killer)
        for thread in threads:
            thread.start()
        join_by = time.monotonic() + STEP_DEADLINE * (1 + max(len(p.steps) for p in PLANS)) + 30
        for thread in threads:  # every driver's own waits are bounded; this bounds them all
            thread.join(max(0.0, join_by - time.monotonic()))
        stop_killer()
        for driver in drivers:
            driver.api.close()
        logs = "\n".join(p.all_logs() for p in [*apis, *workers])
        errors = [f"{d.plan.mesh}: {d.error!r}" for d in drivers if d.error is not None]
        assert not any(thread.is_alive() for thread in threads), "a mesh driver hung"
        assert errors == [], f"seed {seed_value}: {errors}\n{logs[-20000:]}"
        assert killer.error is None, repr(killer.error)
        assert "Traceback" not in logs, logs[-20000:]
        apis[0].wait_healthy()  # the restarted API server is back
        tables = read_tables(url)
    check_outcome(tables, PLANS, drivers, MESHES, before)
    steps = sum(len(d.runs) for d in drivers)
    lost = sum(1 for d in drivers for r in d.runs if not r.acknowledged)
    failed_calls = sum(d.api.lost for d in drivers)
    failed_writes = sum(d.api.lost_writes for d in drivers)
    leaves = [j for j in tables["jobs"] if j["result"] is not None]
    print(
        f"\ncrash run (seed {seed_value}): {killer.kills} worker kills ({killer.orphaning_kills} left "
        f"{killer.orphaned_leases} leases held), {killer.api_kills} API kill, "
        f"{steps} steps ({failed_calls} calls failed to connect or lost their answer, {failed_writes} of them "
        f"writes; {lost} steps started by a write whose answer was lost), {len(leaves)} leaves, "
        f"max attempt {max(j['attempt'] for j in leaves)}, {time.monotonic() - started:.1f}s; "
        f"slowest step {max(r.seconds for d in drivers for r in d.runs):.1f}s"
    )
    assert killer.kills >= MIN_KILLS, f"only {killer.kills} kills: the run was too short to mean much"
    assert killer.api_kills == 1


# -- helpers for the single-worker tests -----------------------------------------------------------------


def stop_holding_lease(
    worker: MeshupProcess,
    reader: JobsReader,
    owner: str,
    *,
    root_id: str | None = None,
    job_type: str | None = None,
    timeout: float,
) -> tuple[str, str, int] | None:
    """Run ``worker`` in short slices (SIGSTOP/SIGCONT), looking at the jobs while it is stopped,
    until it is seen holding a lease (on a leaf of ``root_id`` of type ``job_type`` if given).
    Returns that leaf (id, type, attempt) with the worker left stopped, before it could finish
    the leaf; or None, with the worker running, when it held none in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.signal(signal.SIGSTOP)
        time.sleep(0.002)  # whatever it had already sent to the database has landed
        rows = reader.query(
            "SELECT id, type, attempt, root_id FROM jobs WHERE lease_owner = ? AND runnable", owner
        )
        rows = [
            row
            for row in rows
            if (root_id is None or row[3] == root_id) and (job_type is None or row[1] == job_type)
        ]
        if rows:
            return str(rows[0][0]), str(rows[0][1]), int(rows[0][2])
        worker.signal(signal.SIGCONT)
        time.sleep(0.001)
    return None


def catch_lease(
    worker: MeshupProcess,
    reader: JobsReader,
    root_id: str,
    owner: str,
    act: Callable[[], None],
    *,
    job_type: str | None = None,
    timeout: float = 30.0,
) -> tuple[str, str, int]:
    """Stop ``worker`` while it holds the lease on a leaf of ``root_id``, then ``act`` (kill it, or
    signal and continue it)."""
    caught = stop_holding_lease(worker, reader, owner, root_id=root_id, job_type=job_type, timeout=timeout)
    assert caught is not None, f"worker {owner} never held a lease on a leaf of {root_id}"
    act()
    return caught


def leaf_row(url: str, job_id: str) -> dict[str, Any]:
    return next(j for j in read_tables(url)["jobs"] if j["id"] == job_id)


def wait_root(api: Api, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.read(f"/v1/{PROJECT}/mesh-job/{job_id}", deadline)
        if job["status"]["phase"] in ("Success", "Failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def single_cluster_setup(url: str, tmp_path: Path) -> tuple[ApiProcess, Api, dict[str, str]]:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(crash_seed({"solo": ("s1",)})))
    env = meshup_env(url, MASTER_KEY, lease_seconds=LEASE, MESHUP_ACCESS_LOG="0")
    api_process = ApiProcess("api", env, tmp_path, seed=seed)
    return api_process, Api([api_process]), env


def create_task(api: Api) -> dict[str, Any]:
    driver = Driver(Plan("solo", (), "Waiting"), api)
    driver.create()
    return {"taskId": driver.task_id, "jobId": driver.runs[-1].job_id}


# -- 2. a killed worker's lease expires and another worker takes the leaf over ------------------------


def test_expired_lease_is_taken_over_by_another_worker(url: str, tmp_path: Path) -> None:
    api_process, api, env = single_cluster_setup(url, tmp_path)
    first = worker_process("worker-a", env, tmp_path, threads=1, sim_speed=1)
    second = worker_process("worker-b", env, tmp_path, threads=1, sim_speed=1)
    with killing_all([api_process, first, second]):
        api_process.start()
        api_process.wait_healthy()
        first.start()
        owner = first.owner()
        created = create_task(api)
        assert wait_root(api, created["jobId"], 30)["status"]["phase"] == "Success"
        driver = Driver(Plan("solo", (), "Waiting"), api, task_id=created["taskId"])
        driver.runs.append(StepRun("PreCheck", created["jobId"], True))
        driver.start("ControlPlaneUpgrade", None)
        root = driver.runs[-1].job_id
        # WaitControlPlaneReady takes ~6 s simulated: kill the worker while it holds a leaf's lease.
        with closing(JobsReader(url)) as reader:
            leaf, leaf_type, attempt = catch_lease(
                first, reader, root, owner, first.kill, job_type="WaitControlPlaneReady"
            )
        held = leaf_row(url, leaf)
        assert held["lease_owner"] == owner and held["runnable"]  # claimed (maybe not yet started)
        second.start()
        taker = second.owner()
        job = wait_root(api, root, 45)
        assert job["status"]["phase"] == "Success", job["status"]
        after = leaf_row(url, leaf)
        assert after["attempt"] > attempt, (leaf_type, attempt, after["attempt"])
        assert after["phase"] == "Success" and after["lease_owner"] is None
        tables = read_tables(url)
        api.close()
    check_jobs_settled(tables["jobs"])
    assert taker != owner
    print(f"\n{leaf_type} leased by the killed worker at attempt {attempt}, finished at {after['attempt']}")


# -- 3. SIGTERM drains: steps in flight are finished, the worker exits 0 and holds nothing ------------


def test_sigterm_drains_the_worker(url: str, tmp_path: Path) -> None:
    api_process, api, env = single_cluster_setup(url, tmp_path)
    first = worker_process("worker-a", env, tmp_path, threads=2, sim_speed=0.3)
    second = worker_process("worker-b", env, tmp_path, threads=2, sim_speed=0.3)
    with killing_all([api_process, first, second]):
        api_process.start()
        api_process.wait_healthy()
        first.start()
        owner = first.owner()
        created = create_task(api)  # a PreCheck: 7 leaves at once
        terminated: list[float] = []

        def terminate() -> None:
            first.signal(signal.SIGTERM)  # handled as soon as it runs again
            terminated.append(time.monotonic())
            first.signal(signal.SIGCONT)

        with closing(JobsReader(url)) as reader:
            leaf, leaf_type, _ = catch_lease(first, reader, created["jobId"], owner, terminate)
        try:
            code = first.wait(timeout=LEASE + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {LEASE + 5}s of SIGTERM:\n{first.log()}")
        took = time.monotonic() - terminated[0]
        assert code == 0, first.log()
        assert took < LEASE + 3, took
        assert "draining" in first.log()
        tables = read_tables(url)
        held = [(j["type"], j["phase"]) for j in tables["jobs"] if j["lease_owner"] == owner]
        assert held == [], f"leases left by the drained worker: {held}"
        caught = next(j for j in tables["jobs"] if j["id"] == leaf)
        assert caught["lease_owner"] is None  # finished, or put back to wait for its time
        # The rest of the step goes on with another worker.
        second.start()
        assert wait_root(api, created["jobId"], 30)["status"]["phase"] == "Success"
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=LEASE + 5) == 0
        tables = read_tables(url)
        api.close()
    check_jobs_settled(tables["jobs"])
    print(f"\nSIGTERM with {leaf_type} in flight: exited 0 after {took:.2f}s")
