"""Live job events: the mesh-job GET as a server-sent event stream, against real server processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshup.client.sse import Event, parse_events
from meshup.iam.signing import sign
from tests.conftest import backends
from tests.support.databases import database_url
from tests.support.processes import ApiProcess, MeshupProcess, killing_all, meshup_env, worker_process
from tests.support.server import ServerProcess, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

PROJECT = "0e1e2e3e4e5e6e7e8e9eaebecedeeef0"
ACCOUNT, ROOT, PASSWORD = "events", "events-admin", "EventsAdmin-Passw0rd!"
NOBODY, NOBODY_PASSWORD = "nobody", "Nobody-Passw0rd!!"
AK, SK = "AKEVENTSROOT00000001", "EventsRootSecretKeyExample0000000000001"
STUCK_JOB = "7c6b2f00-0000-4000-8000-000000000001"
MISSING_JOB = "7c6b2f00-0000-4000-8000-00000000dead"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
MASTER_KEY = "events-test-master-key-0123456789abcdefgh"
MESHES = ("live", "resume", "multi")
STREAM = {"Accept": "text/event-stream"}


def _mesh_id(name: str) -> str:
    return f"8d7c3a00-0000-4000-8000-{MESHES.index(name) + 1:012d}"


def _cluster(cluster_id: str) -> dict[str, Any]:
    return {
        "id": cluster_id,
        "kubernetesVersion": "1.28",
        "nodes": {"count": 3, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "cart", "replicas": 1}],
            }
        ],
    }


SEED: dict[str, Any] = {
    "accounts": [
        {
            "name": ACCOUNT,
            "projects": [{"name": "cn-north-4", "id": PROJECT}],
            "users": [
                {"name": ROOT, "root": True, "password": PASSWORD, "accessKeys": [{"ak": AK, "sk": SK}]},
                {"name": NOBODY, "password": NOBODY_PASSWORD},
            ],
            "clusters": [_cluster(f"ev-{name}") for name in (*MESHES, "stuck")],
            "meshes": [
                {
                    "name": f"mesh-{name}",
                    "id": _mesh_id(name),
                    "project": "cn-north-4",
                    "version": SOURCE,
                    "clusters": [f"ev-{name}"],
                }
                for name in MESHES
            ]
            + [
                {
                    "name": "mesh-stuck",
                    "project": "cn-north-4",
                    "version": SOURCE,
                    "clusters": ["ev-stuck"],
                    "jobs": [  # a fixture job no worker runs: it stays Running
                        {
                            "uid": STUCK_JOB,
                            "type": "ControlPlaneUpgrade",
                            "subjobs": [
                                {
                                    "type": "InstallControlPlane",
                                    "target": "cluster ev-stuck",
                                    "phase": "Running",
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def call(url: str, method: str, path: str, body: Any = None) -> httpx.Response:
    """A request signed with the root user's AK/SK, as the official SDK signs it."""
    content = b"" if body is None else json.dumps(body).encode()
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    host = url.removeprefix("http://")
    headers = {"Host": host, "X-Sdk-Date": date, "Content-Type": "application/json"}
    headers["Authorization"] = sign(method, path, headers, content, AK, SK, sdk_date=date)
    return httpx.request(method, url + path, headers=headers, content=content, timeout=60)


def token(url: str, user: str = ROOT, password: str = PASSWORD) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": ACCOUNT}}},
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    response = httpx.post(f"{url}/v3/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]


def job_path(job_id: str) -> str:
    return f"/v1/{PROJECT}/mesh-job/{job_id}"


def start_step(url: str, mesh: str) -> str:
    """An upgrade task of ``mesh`` past its PreCheck, then its ControlPlaneUpgrade step: the job id."""
    task = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": f"events-{mesh}"},
        "spec": {
            "meshId": _mesh_id(mesh),
            "upgradeStrategy": "Canary",
            "targetVersion": TARGET,
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
    created = call(url, "POST", f"/v1/{PROJECT}/mesh-upgrade", task)
    assert created.status_code == 201, created.text
    task_path = f"/v1/{PROJECT}/mesh-upgrade/{created.json()['metadata']['uid']}"
    deadline = time.monotonic() + 60
    while call(url, "GET", task_path).json()["status"]["phase"] != "Waiting":
        assert time.monotonic() < deadline, "PreCheck did not finish"
        time.sleep(0.1)
    step = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "spec": {"currentStep": {"step": "ControlPlaneUpgrade"}},
    }
    changed = call(url, "PUT", task_path, step)
    assert changed.status_code == 200, changed.text
    return str(changed.json()["status"]["jobId"])


@dataclass
class Received:
    status: int
    content_type: str
    events: list[tuple[Event, float]] = field(default_factory=list)  # with the time it arrived
    comments: list[str] = field(default_factory=list)
    ended: bool = False  # the server closed the stream


def watch(
    url: str, job_id: str, headers: dict[str, str], *, seconds: float = 60.0, until_events: int | None = None
) -> Received:
    """Read a stream for at most ``seconds`` (or until ``until_events`` events came)."""
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", url + job_path(job_id), headers=headers, timeout=30) as response:
        received = Received(response.status_code, response.headers.get("content-type", ""))
        if response.status_code != 200:
            response.read()
            return received

        def lines() -> Iterator[str]:
            for line in response.iter_lines():
                if line.startswith(":"):
                    received.comments.append(line)
                yield line
                if time.monotonic() > deadline:
                    return
            received.ended = True

        for event in parse_events(lines()):
            received.events.append((event, time.monotonic()))
            if until_events is not None and len(received.events) >= until_events:
                break
    return received


def phase(event: Event) -> str:
    return str(json.loads(event.data)["status"]["phase"])


def marker_time(event_id: str) -> datetime:
    """The instant of the latest write an event id names (its first 20 digits, UTC, microseconds)."""
    return datetime.strptime(event_id[:20], "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)


@pytest.fixture(scope="module", params=backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"events-{request.param}")
    seed = workdir / "seed.json"
    seed.write_text(json.dumps(SEED))
    with database_url(str(request.param), workdir) as url:
        process = start_server(
            workdir,
            url,
            seed=seed,
            extra_args=["--sim-speed", "0.5", "--workers", "2"],
            extra_env={"MESHUP_SSE_KEEPALIVE_SECONDS": "0.3"},
        )
        try:
            yield process
        finally:
            process.stop()


def test_errors_before_the_stream_are_the_gets_json_errors(server: ServerProcess) -> None:
    anonymous = watch(server.url, STUCK_JOB, STREAM)
    assert (anonymous.status, anonymous.content_type) == (401, "application/json")
    nobody = {**STREAM, "X-Auth-Token": token(server.url, NOBODY, NOBODY_PASSWORD)}
    forbidden = watch(server.url, STUCK_JOB, nobody)
    assert (forbidden.status, forbidden.content_type) == (403, "application/json")
    root = {**STREAM, "X-Auth-Token": token(server.url)}
    missing = watch(server.url, MISSING_JOB, root)
    assert (missing.status, missing.content_type) == (404, "application/json")


def test_a_quiet_job_sends_its_document_then_keep_alives(server: ServerProcess) -> None:
    headers = {**STREAM, "X-Auth-Token": token(server.url)}
    plain = httpx.get(server.url + job_path(STUCK_JOB), headers={"X-Auth-Token": headers["X-Auth-Token"]})
    assert plain.headers["content-type"] == "application/json"  # no Accept header: today's JSON
    received = watch(server.url, STUCK_JOB, headers, seconds=1.5)
    assert received.status == 200
    assert received.content_type.startswith("text/event-stream")
    [(event, _)] = received.events
    assert event.data.encode() == plain.content  # exactly the bytes of the plain GET
    assert event.id is not None
    assert received.comments.count(": keep-alive") >= 3
    # Resuming with the current id: no document, only keep-alives.
    resumed = watch(server.url, STUCK_JOB, {**headers, "Last-Event-ID": event.id}, seconds=1.5)
    assert resumed.status == 200 and resumed.events == []
    assert resumed.comments.count(": keep-alive") >= 3
    # An id the tree has moved past: the current document again.
    stale = watch(server.url, STUCK_JOB, {**headers, "Last-Event-ID": "0-1"}, seconds=0.5)
    assert [e.data for e, _ in stale.events] == [event.data]


def test_events_follow_the_tree_until_a_terminal_phase(server: ServerProcess) -> None:
    job_id = start_step(server.url, "live")
    headers = {**STREAM, "X-Auth-Token": token(server.url)}
    received = watch(server.url, job_id, headers)
    assert received.ended, "the stream did not end after the job did"
    events = [event for event, _ in received.events]
    assert len(events) >= 3, [e.data for e in events]
    assert phase(events[-1]) == "Success"
    assert all(phase(e) not in ("Success", "Failed") for e in events[:-1])
    assert len({e.data for e in events}) == len(events)  # each event is a change
    ids = [e.id or "" for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    final = httpx.get(server.url + job_path(job_id), headers={"X-Auth-Token": headers["X-Auth-Token"]})
    assert events[-1].data.encode() == final.content
    # The job has ended and the client holds its last id: 204 tells an EventSource to stop.
    done = watch(server.url, job_id, {**headers, "Last-Event-ID": ids[-1]})
    assert done.status == 204
    # Without that id, the final document, and the end of the stream.
    again = watch(server.url, job_id, headers)
    assert [e.data for e, _ in again.events] == [events[-1].data] and again.ended


def test_one_stream_per_change_on_access_log(server: ServerProcess) -> None:
    job_id = start_step(server.url, "resume")
    headers = {**STREAM, "X-Auth-Token": token(server.url)}
    before = server.log().count('"route":"/v1/{project_id}/mesh-job/{job_id}"')
    received = watch(server.url, job_id, headers)
    assert received.ended and phase(received.events[-1][0]) == "Success"
    deadline = time.monotonic() + 5
    while server.log().count('"route":"/v1/{project_id}/mesh-job/{job_id}"') == before:
        assert time.monotonic() < deadline, "no access log line for the stream"
        time.sleep(0.05)
    lines = [
        line for line in server.log().splitlines() if '"route":"/v1/{project_id}/mesh-job/{job_id}"' in line
    ]
    assert len(lines) == before + 1  # one line for the whole stream, written when it ended
    logged = json.loads(lines[-1][lines[-1].index("{") :])
    assert logged["status"] == 200 and logged["durationMs"] > 100


@pytest.mark.postgres
def test_a_stream_on_one_api_process_sees_a_workers_change_within_a_second(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir: Path = tmp_path_factory.mktemp("events-multi")
    seed = workdir / "seed.json"
    seed.write_text(json.dumps(SEED))
    with database_url("postgres", workdir) as url:
        env = meshup_env(url, MASTER_KEY, lease_seconds=5)
        a = ApiProcess("api-a", env, workdir, seed=seed)
        b = ApiProcess("api-b", env, workdir)
        worker = worker_process("worker", env, workdir, threads=2, sim_speed=0.5)
        processes: list[MeshupProcess] = [a, b, worker]
        with killing_all(processes):
            a.start()
            a.wait_healthy()
            b.start()
            b.wait_healthy()
            worker.start()
            job_id = start_step(b.url, "multi")  # started through B, run by the worker
            received = watch(a.url, job_id, {**STREAM, "X-Auth-Token": token(a.url)})
    assert received.ended and phase(received.events[-1][0]) == "Success"
    assert len(received.events) >= 3
    for event, arrived in received.events[1:]:  # the first is the state at connection time
        assert event.id is not None
        lag = time.time() - (time.monotonic() - arrived) - marker_time(event.id).timestamp()
        assert lag < 1.5, f"an event came {lag:.2f}s after the change it shows"
