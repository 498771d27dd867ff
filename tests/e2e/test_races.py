"""Concurrent writes that only one may win, through real API processes: one server on SQLite, two
servers on one PostgreSQL database (so the database, not a process, has to decide).

Twenty requests are released at once (alternating between the servers); exactly one succeeds and
every other one gets the 409 a caller gets after the winner, with the same message:

1. creates of meshes with different names and one cluster (one live mesh per cluster);
2. creates of meshes with one name (one live mesh per name in a project);
3. creates of upgrade tasks on one mesh (one active task per mesh);
4. PUTs of the next step of one task (one running step per task).

Workers are stopped while tasks and steps race, so the winner's job is still running when the
losers are answered and what a serial caller would hear is fixed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshup.iam.signing import sign
from tests.conftest import backends
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
AK, SK = "AKRACETESTROOT000001", "RaceTestSecretKey00000000000000000000001"
MASTER_KEY = "race-test-master-key-0123456789abcdefghijk"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
RACERS = 20
DEADLINE = 60.0
SEED = {
    "accounts": [
        {
            "name": "racers",
            "projects": [{"name": "cn-north-4", "id": PROJECT}],
            "users": [{"name": "root", "root": True, "accessKeys": [{"ak": AK, "sk": SK}]}],
        }
    ]
}


@dataclass
class Servers:
    apis: list[ApiProcess]
    worker: MeshupProcess
    database_url: str

    def call(self, method: str, path: str, body: Any = None, *, via: int = 0) -> httpx.Response:
        api = self.apis[via % len(self.apis)]
        content = b"" if body is None else json.dumps(body).encode()
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Host": f"127.0.0.1:{api.port}", "X-Sdk-Date": date, "Content-Type": "application/json"}
        headers["Authorization"] = sign(method, path, headers, content, AK, SK, sdk_date=date)
        return httpx.request(method, api.url + path, headers=headers, content=content, timeout=60)

    def race(self, method: str, paths_and_bodies: list[tuple[str, Any]]) -> list[httpx.Response]:
        """All requests at once (released together), spread over the API servers."""
        start = threading.Barrier(len(paths_and_bodies))

        def one(index: int) -> httpx.Response:
            path, body = paths_and_bodies[index]
            start.wait()
            return self.call(method, path, body, via=index)

        with ThreadPoolExecutor(len(paths_and_bodies)) as pool:
            return list(pool.map(one, range(len(paths_and_bodies))))

    def start_worker(self) -> None:
        if not self.worker.alive:
            self.worker.start()

    def stop_worker(self) -> None:
        if self.worker.alive:
            self.worker.signal(signal.SIGTERM)
            assert self.worker.wait(timeout=30) == 0, self.worker.log()

    def wait_for(self, path: str, field: tuple[str, str], value: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while True:
            response = self.call("GET", path)
            assert response.status_code == 200, response.text
            document = dict(response.json())
            if document[field[0]][field[1]] == value:
                return document
            assert time.monotonic() < deadline, f"{path}: {field} is still {document[field[0]][field[1]]}"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=backends())
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    backend = str(request.param)
    workdir: Path = tmp_path_factory.mktemp(f"races-{backend}")
    seed = workdir / "seed.json"
    seed.write_text(json.dumps(SEED))
    with database_url(backend, workdir) as url:
        env = meshup_env(url, MASTER_KEY, lease_seconds=5, MESHUP_ACCESS_LOG="0")
        count = 1 if backend == "sqlite" else 2
        apis = [
            ApiProcess(f"api-{n}", env, workdir, seed=seed if n == 1 else None) for n in range(1, count + 1)
        ]
        worker = worker_process("worker", env, workdir, threads=2, sim_speed=0)
        with killing_all([*apis, worker]):
            apis[0].start()
            apis[0].wait_healthy()  # migrated and seeded before the others start
            for api in apis[1:]:
                api.start()
                api.wait_healthy()
            yield Servers(apis, worker, url)


def mesh_body(name: str, cluster_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Mesh",
        "metadata": {"name": name},
        "spec": {
            "type": "InCluster",
            "version": SOURCE,
            "extendParams": {"clusters": [{"clusterID": cluster_id}]},
        },
    }


def task_body(name: str, mesh_id: str) -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "spec": {
            "meshId": mesh_id,
            "upgradeStrategy": "Canary",
            "targetVersion": TARGET,
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }


def one_winner(responses: list[httpx.Response], status: int) -> tuple[dict[str, Any], list[str]]:
    """The winner's document and the losers' messages; every loser is a 409 of the service."""
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [status] + [409] * (len(responses) - 1), [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == status)
    losers = [r.json() for r in responses if r.status_code == 409]
    assert all(error["errorCode"] == "ASM.01010003" for error in losers), losers
    return dict(winner.json()), [str(error["errorMsg"]) for error in losers]


def listed(servers: Servers) -> list[dict[str, Any]]:
    response = servers.call("GET", f"/v1/{PROJECT}/meshes")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def running_mesh(servers: Servers, name: str, cluster_id: str) -> str:
    created = servers.call("POST", f"/v1/{PROJECT}/meshes", mesh_body(name, cluster_id))
    assert created.status_code == 201, created.text
    mesh_id = str(created.json()["metadata"]["uid"])
    servers.start_worker()
    servers.wait_for(f"/v1/{PROJECT}/meshes/{mesh_id}", ("status", "phase"), "Running")
    return mesh_id


def test_one_mesh_per_cluster(servers: Servers) -> None:
    bodies = [
        (f"/v1/{PROJECT}/meshes", mesh_body(f"race-cluster-{i:02d}", "race-shared")) for i in range(RACERS)
    ]
    winner, messages = one_winner(servers.race("POST", bodies), 201)
    uid = winner["metadata"]["uid"]
    assert messages == [f"cluster race-shared already belongs to mesh {uid}"] * (RACERS - 1)
    holders = [m for m in listed(servers) if "race-shared" in str(m["spec"]["extendParams"]["clusters"])]
    assert [m["metadata"]["uid"] for m in holders] == [uid]
    # A serial caller hears the same.
    late = servers.call("POST", f"/v1/{PROJECT}/meshes", mesh_body("race-cluster-late", "race-shared"))
    assert (late.status_code, late.json()["errorMsg"]) == (409, messages[0])


def test_one_live_mesh_per_name(servers: Servers) -> None:
    bodies = [(f"/v1/{PROJECT}/meshes", mesh_body("race-name", f"race-name-c{i:02d}")) for i in range(RACERS)]
    winner, messages = one_winner(servers.race("POST", bodies), 201)
    assert messages == ["a mesh named race-name already exists in this project"] * (RACERS - 1)
    named = [m["metadata"]["uid"] for m in listed(servers) if m["metadata"]["name"] == "race-name"]
    assert named == [winner["metadata"]["uid"]]
    # The losers' clusters were not taken: each can start a mesh of its own.
    loser_cluster = next(
        f"race-name-c{i:02d}"
        for i in range(RACERS)
        if f"race-name-c{i:02d}" != winner["spec"]["extendParams"]["clusters"][0]["clusterID"]
    )
    again = servers.call("POST", f"/v1/{PROJECT}/meshes", mesh_body("race-name-free", loser_cluster))
    assert again.status_code == 201, again.text


def test_one_active_task_per_mesh(servers: Servers) -> None:
    mesh_id = running_mesh(servers, "race-task", "race-task-c1")
    servers.stop_worker()  # the winner's PreCheck stays Running
    bodies = [(f"/v1/{PROJECT}/mesh-upgrade", task_body(f"up-{i:02d}", mesh_id)) for i in range(RACERS)]
    winner, messages = one_winner(servers.race("POST", bodies), 201)
    task_id = winner["metadata"]["uid"]
    assert messages == [f"mesh race-task already has an active upgrade task {task_id} (Running)"] * (
        RACERS - 1
    )
    with closing(JobsReader(servers.database_url)) as reader:
        tasks = reader.query("SELECT id FROM upgrade_tasks WHERE mesh_id = ?", mesh_id)
        prechecks = reader.query(
            "SELECT id FROM jobs WHERE mesh_id = ? AND parent_id IS NULL AND type = 'PreCheck'", mesh_id
        )
    assert [row[0] for row in tasks] == [task_id]
    assert [row[0] for row in prechecks] == [winner["status"]["jobId"]]  # the losers left no job


def test_one_running_step_per_task(servers: Servers) -> None:
    mesh_id = running_mesh(servers, "race-step", "race-step-c1")
    created = servers.call("POST", f"/v1/{PROJECT}/mesh-upgrade", task_body("step-race", mesh_id))
    assert created.status_code == 201, created.text
    task_path = f"/v1/{PROJECT}/mesh-upgrade/{created.json()['metadata']['uid']}"
    servers.wait_for(task_path, ("status", "phase"), "Waiting")
    servers.stop_worker()  # the winner's step stays Running
    step = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "spec": {"currentStep": {"step": "ControlPlaneUpgrade"}},
    }
    winner, messages = one_winner(servers.race("PUT", [(task_path, step)] * RACERS), 200)
    assert messages == ["ControlPlaneUpgrade is still running; wait for its job to finish"] * (RACERS - 1)
    task = servers.call("GET", task_path).json()
    assert task["status"]["jobId"] == winner["status"]["jobId"]
    with closing(JobsReader(servers.database_url)) as reader:
        roots = reader.query(
            "SELECT id FROM jobs WHERE mesh_id = ? AND parent_id IS NULL AND type = 'ControlPlaneUpgrade'",
            mesh_id,
        )
    assert [row[0] for row in roots] == [winner["status"]["jobId"]]  # one step started, one job
    servers.start_worker()
    servers.wait_for(task_path, ("status", "phase"), "Waiting")
