"""Canary upgrade tasks end to end: a real ``meshup serve``, driven only through the official SDK.

Every call goes through ``AsmClient.call_api`` signed with AK/SK (the SDK has no MeshUpgrade
methods), as a user of the real service would do it: create a task, PUT each step, poll
``mesh-job`` until the step's root job ends, read the task (and the mesh's phase and version).
Raw httpx, signed as the SDK signs, is used only for what the SDK cannot send (a wrong
Content-Type, malformed JSON). Each test owns a mesh of
``upgrade_seed.yaml``, so the tests share one server per database backend; simulated clusters take
no time (``--sim-speed 0``) except on the one server that shows a running step (asm-api.md §4, §5,
§7).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from meshup.iam import signing
from tests.conftest import backends
from tests.support.clients import asm_client, call_json
from tests.support.server import ServerProcess, serve_backend
from tests.support.wire import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, TIMESTAMP, UUID4

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

SEED = Path(__file__).with_name("upgrade_seed.yaml")
PROJECT = "0aa1bb2cc3dd4ee5ff60718293a4b5c6"
KEYS = {
    "root": ("AKUPGRADEROOT0000001", "UpgradeRootSecretExample0000000000000001"),
    "paula": ("AKUPGRADEPAULA000001", "UpgradePaulaSecretExample000000000000001"),
    "gina": ("AKUPGRADEGINA0000001", "UpgradeGinaSecretExample0000000000000001"),
}
MESH_FLOW = "7e570000-0000-4000-8000-000000000001"
MESH_ROLLBACK = "7e570000-0000-4000-8000-000000000002"
MESH_FAULT = "7e570000-0000-4000-8000-000000000003"
MESH_BUSY = "7e570000-0000-4000-8000-000000000004"
MESH_OLD_K8S = "7e570000-0000-4000-8000-000000000005"
MESH_BROKEN = "7e570000-0000-4000-8000-000000000006"
MESH_INPUT = "7e570000-0000-4000-8000-000000000007"
MESH_PAY = "7e570000-0000-4000-8000-000000000008"
MESH_SHOP = "7e570000-0000-4000-8000-000000000009"
MESH_DELETE = "7e570000-0000-4000-8000-00000000000a"
MISSING_TASK = "00000000-0000-4000-8000-00000000dead"

SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
TASKS = "/v1/{project_id}/mesh-upgrade"
TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
JOB = "/v1/{project_id}/mesh-job/{job_id}"
MESH = "/v1/{project_id}/meshes/{mesh_id}"
TERMINAL = ("Success", "Failed")
JOB_WAIT = 30.0  # seconds: the longest a step's job may take on any server here
POLL = 0.05


# --- servers ---------------------------------------------------------------------------------------


def _serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str, speed: str
) -> Iterator[ServerProcess]:
    yield from serve_backend(
        str(request.param), tmp_path_factory, name, SEED, ["--sim-speed", speed, "--workers", "2"]
    )


@pytest.fixture(scope="module", params=backends())
def upgrade_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Simulated clusters take no time: a step's job ends as fast as the workers run it."""
    yield from _serve(request, tmp_path_factory, "upgrade", "0")


@pytest.fixture(scope="module", params=backends())
def realtime_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Simulated clusters in real time: WaitControlPlaneReady takes about 6 s."""
    yield from _serve(request, tmp_path_factory, "realtime", "1")


# --- the official SDK --------------------------------------------------------------------------------


class Api:
    """One user's AK/SK-signed SDK client and the mesh-upgrade / mesh-job calls through call_api."""

    def __init__(self, server: ServerProcess, who: str) -> None:
        ak, sk = KEYS[who]
        self.client = asm_client(server.url, ak, sk, PROJECT)

    def call(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        return call_json(self.client, method, path, params, body)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        status, task = self.call("POST", TASKS, body=body)
        assert status == 201
        return task

    def get(self, task_id: str) -> dict[str, Any]:
        status, task = self.call("GET", TASK, {"mesh_upgrade_id": task_id})
        assert status == 200
        return task

    def put(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        status, task = self.call("PUT", TASK, {"mesh_upgrade_id": task_id}, body)
        assert status == 200
        return task

    def delete(self, task_id: str) -> dict[str, Any]:
        status, task = self.call("DELETE", TASK, {"mesh_upgrade_id": task_id})
        assert status == 200
        return task

    def job(self, job_id: str) -> dict[str, Any]:
        status, job = self.call("GET", JOB, {"job_id": job_id})
        assert status == 200
        return job

    def mesh(self, mesh_id: str) -> tuple[str, str]:
        """(status.phase, spec.version) of a mesh."""
        status, mesh = self.call("GET", MESH, {"mesh_id": mesh_id})
        assert status == 200
        return mesh["status"]["phase"], mesh["spec"]["version"]

    def step(self, task: dict[str, Any], step: str, namespaces: list[str] | None = None) -> dict[str, Any]:
        """PUT the task as read, with a new currentStep (what a client does: GET, modify, PUT)."""
        body = copy.deepcopy(task)
        body["spec"]["currentStep"] = {"step": step}
        if namespaces is not None:
            body["spec"]["currentStep"]["namespaces"] = namespaces
        started = self.put(task["metadata"]["uid"], body)
        assert started["status"]["phase"] == "Running"
        assert started["status"]["step"] == step
        assert started["status"]["jobId"] != task["status"]["jobId"]
        assert started["status"]["message"] == ""
        assert started["spec"]["currentStep"]["step"] == step
        return started


def refused(call: Callable[..., Any], *args: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call(*args)
    return info.value


def expect(
    error: ClientRequestException, status_and_code: tuple[int, str], *fragments: str
) -> ClientRequestException:
    assert (error.status_code, error.error_code) == status_and_code, error.error_msg
    for fragment in fragments:
        assert fragment in error.error_msg, (fragment, error.error_msg)
    assert re.fullmatch(r"[0-9a-f]{32}", error.request_id)
    return error


def conflict(call: Callable[..., Any], *args: Any, says: tuple[str, ...]) -> ClientRequestException:
    return expect(refused(call, *args), CONFLICT, *says)


def invalid(call: Callable[..., Any], *args: Any, says: tuple[str, ...]) -> ClientRequestException:
    return expect(refused(call, *args), INVALID, *says)


def new_task(mesh_id: str, target: str = TARGET, name: str = "to-1-18") -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "spec": {
            "meshId": mesh_id,
            "upgradeStrategy": "Canary",
            "targetVersion": target,
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }


def step_body(step: str, namespaces: list[str] | None = None) -> dict[str, Any]:
    current: dict[str, Any] = {"step": step}
    if namespaces is not None:
        current["namespaces"] = namespaces
    return {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}


# --- job trees ---------------------------------------------------------------------------------------


def derived(children: list[dict[str, Any]]) -> str:
    """asm-api.md §4: a parent's phase from its children's."""
    phases = [child["status"]["phase"] for child in children]
    if all(phase == "Success" for phase in phases):
        return "Success"
    if "Failed" in phases and "Running" not in phases:
        return "Failed"
    if any(phase != "Initializing" for phase in phases):
        return "Running"
    return "Initializing"


def check_tree(node: dict[str, Any]) -> None:
    """The MeshJob envelope in every node, and every parent's phase and reason derived."""
    assert (node["kind"], node["apiVersion"]) == ("Job", "v3")
    assert UUID4.match(node["metadata"]["uid"])
    for stamp in (node["metadata"]["creationTimestamp"], node["metadata"]["updateTimestamp"]):
        assert TIMESTAMP.match(stamp)
    status = node["status"]
    assert status["phase"] in ("Initializing", "Running", "Success", "Failed")
    assert (status["startTime"] == "") == (status["phase"] == "Initializing")
    assert (status["completionTime"] != "") == (status["phase"] in TERMINAL)
    for stamp in (status["startTime"], status["completionTime"]):
        assert stamp == "" or TIMESTAMP.match(stamp)
    assert isinstance(node["spec"]["target"], str) and node["spec"]["target"]
    children = node["spec"]["subjobs"]
    assert isinstance(children, list)
    for child in children:
        check_tree(child)
    if not children:
        return
    assert status["phase"] == derived(children), node
    latest = max(child["metadata"]["updateTimestamp"] for child in children)
    assert node["metadata"]["updateTimestamp"] >= latest
    if status["phase"] == "Failed":
        failed = next(child for child in children if child["status"]["phase"] == "Failed")
        reason = f"{failed['spec']['type']} {failed['spec']['target']}: {failed['status']['reason']}"
        assert status["reason"] == reason


def wait_for_job(
    api: Api, job_id: str, timeout: float = JOB_WAIT
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll mesh-job until the root is Success or Failed; every snapshot seen, checked, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        job = api.job(job_id)
        check_tree(job)
        assert job["metadata"]["uid"] == job_id
        seen.append(job)
        if job["status"]["phase"] in TERMINAL:
            return job, seen
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']['phase']} after {timeout}s"
        time.sleep(POLL)


def children_of(job: dict[str, Any]) -> list[tuple[str, str]]:
    return [(child["spec"]["type"], child["spec"]["target"]) for child in job["spec"]["subjobs"]]


def leaves(job: dict[str, Any]) -> list[dict[str, Any]]:
    children = job["spec"]["subjobs"]
    if not children:
        return [job]
    return [leaf for child in children for leaf in leaves(child)]


def phases(job: dict[str, Any]) -> list[str]:
    return [child["status"]["phase"] for child in job["spec"]["subjobs"]]


def precheck_children(mesh: str, clusters: list[str]) -> list[tuple[str, str]]:
    checks = [
        "CheckClusterStatus",
        "CheckClusterVersion",
        "CheckResources",
        "CheckDeprecatedCRDs",
        "CheckGatewayLabels",
        "CheckInjectionLabels",
    ]
    per_cluster = [(check, f"cluster {cluster}") for cluster in clusters for check in checks]
    return [("CheckUpgradePath", f"mesh {mesh}"), *per_cluster]


def control_plane_children(clusters: list[str]) -> list[tuple[str, str]]:
    steps = ("InstallControlPlane", "WaitControlPlaneReady", "InstallGateways")
    return [(step, f"cluster {cluster}") for cluster in clusters for step in steps]


def complete_children(clusters: list[str]) -> list[tuple[str, str]]:
    steps = ("SwitchDefaultRevision", "UninstallControlPlane", "RemoveGateways")
    return [(step, f"cluster {cluster}") for cluster in clusters for step in steps]


def check_migration(node: dict[str, Any], cluster: str, namespace: str, batches: int) -> None:
    """A MigrateNamespace: relabel, restart the workloads batch by batch, verify the proxies."""
    where = f"cluster {cluster} / namespace {namespace}"
    assert (node["spec"]["type"], node["spec"]["target"]) == ("MigrateNamespace", where)
    expected = [("RelabelNamespace", where)]
    expected += [("RestartWorkloads", f"{where} / batch {i} of {batches}") for i in range(1, batches + 1)]
    expected += [("VerifyProxies", where)]
    assert children_of(node) == expected
    assert node["status"]["phase"] == "Success" and set(phases(node)) == {"Success"}


def check_task(
    task: dict[str, Any],
    *,
    task_id: str,
    mesh_id: str,
    phase: str,
    step: str,
    job_id: str,
    migrated: list[str],
    pending: list[str],
    target: str = TARGET,
    message: str = "",
) -> None:
    assert (task["kind"], task["apiVersion"]) == ("MeshUpgrade", "v1")
    assert task["metadata"]["uid"] == task_id
    assert TIMESTAMP.match(task["metadata"]["creationTimestamp"])
    spec = task["spec"]
    assert (spec["meshId"], spec["upgradeStrategy"], spec["targetVersion"], spec["targetType"]) == (
        mesh_id,
        "Canary",
        target,
        "InCluster",
    )
    assert spec["currentStep"]["step"] == step
    assert task["status"] == {
        "phase": phase,
        "step": step,
        "jobId": job_id,
        "message": message,
        "migratedNamespaces": migrated,
        "pendingNamespaces": pending,
    }


def run_step(
    api: Api, task: dict[str, Any], step: str, namespaces: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """PUT a step and wait for its root job: (the task after the step, the finished job)."""
    started = api.step(task, step, namespaces)
    job, _ = wait_for_job(api, started["status"]["jobId"])
    return api.get(task["metadata"]["uid"]), job


# --- (1) the whole canary upgrade ---------------------------------------------------------------------


def test_full_canary_upgrade_over_two_clusters(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    task = api.create(new_task(MESH_FLOW))
    task_id = task["metadata"]["uid"]
    assert UUID4.match(task_id) and task["metadata"]["name"] == "to-1-18"
    check_task(
        task,
        task_id=task_id,
        mesh_id=MESH_FLOW,
        phase="Running",
        step="PreCheck",
        job_id=task["status"]["jobId"],
        migrated=[],
        pending=["shop", "payments"],  # tools is not injected
    )
    conflict(
        api.create, new_task(MESH_FLOW, name="again"), says=("already has an active upgrade task", task_id)
    )

    # PreCheck: all checks at once, one set per cluster.
    job, _ = wait_for_job(api, task["status"]["jobId"])
    assert job["spec"]["type"] == "PreCheck" and job["spec"]["target"] == "mesh mesh-flow"
    assert children_of(job) == precheck_children("mesh-flow", ["c1", "c2"])
    assert job["status"]["phase"] == "Success" and set(phases(job)) == {"Success"}
    task = api.get(task_id)
    pending = ["shop", "payments"]
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Waiting", step="PreCheck",
        job_id=job["metadata"]["uid"], migrated=[], pending=pending,
    )  # fmt: skip
    # A pre-check may be repeated while nothing has changed.
    task, job = run_step(api, task, "PreCheck")
    assert job["status"]["phase"] == "Success"
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Waiting", step="PreCheck",
        job_id=job["metadata"]["uid"], migrated=[], pending=pending,
    )  # fmt: skip

    # ControlPlaneUpgrade: the new revision on every cluster.
    task, job = run_step(api, task, "ControlPlaneUpgrade")
    assert (job["spec"]["type"], job["status"]["phase"]) == ("ControlPlaneUpgrade", "Success")
    assert children_of(job) == control_plane_children(["c1", "c2"])
    assert all(leaf["status"]["phase"] == "Success" for leaf in leaves(job))
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Waiting", step="ControlPlaneUpgrade",
        job_id=job["metadata"]["uid"], migrated=[], pending=pending,
    )  # fmt: skip
    conflict(
        api.put, task_id, step_body("PreCheck"),
        says=("PreCheck is not allowed now", "allowed now: DataPlaneUpgrade, Rollback"),
    )  # fmt: skip

    # DataPlaneUpgrade of one namespace, on both clusters that have it.
    task, job = run_step(api, task, "DataPlaneUpgrade", ["shop"])
    assert (job["spec"]["type"], job["status"]["phase"]) == ("DataPlaneUpgrade", "Success")
    migrations = job["spec"]["subjobs"]
    assert len(migrations) == 2
    check_migration(migrations[0], "c1", "shop", batches=2)  # cart, web | api
    check_migration(migrations[1], "c2", "shop", batches=1)
    assert task["spec"]["currentStep"] == {"step": "DataPlaneUpgrade", "namespaces": ["shop"]}
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Waiting", step="DataPlaneUpgrade",
        job_id=job["metadata"]["uid"], migrated=["shop"], pending=["payments"],
    )  # fmt: skip
    conflict(
        api.put, task_id, step_body("Complete"),
        says=("Complete is not allowed now", "allowed now: DataPlaneUpgrade, Rollback"),
    )  # fmt: skip

    # DataPlaneUpgrade without namespaces: all the remaining ones.
    task, job = run_step(api, task, "DataPlaneUpgrade")
    assert job["status"]["phase"] == "Success"
    assert len(job["spec"]["subjobs"]) == 1
    check_migration(job["spec"]["subjobs"][0], "c1", "payments", batches=1)
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Waiting", step="DataPlaneUpgrade",
        job_id=job["metadata"]["uid"], migrated=["shop", "payments"], pending=[],
    )  # fmt: skip
    conflict(
        api.put, task_id, step_body("DataPlaneUpgrade"),
        says=("DataPlaneUpgrade is not allowed now", "allowed now: Complete, Rollback"),
    )  # fmt: skip

    # Complete: the point of no return.
    task, job = run_step(api, task, "Complete")
    assert (job["spec"]["type"], job["status"]["phase"]) == ("Complete", "Success")
    assert children_of(job) == complete_children(["c1", "c2"])
    check_task(
        task, task_id=task_id, mesh_id=MESH_FLOW, phase="Completed", step="Complete",
        job_id=job["metadata"]["uid"], migrated=["shop", "payments"], pending=[],
    )  # fmt: skip
    conflict(api.put, task_id, step_body("Rollback"), says=("Completed", "nothing more can be started"))
    for step in ("PreCheck", "Complete"):
        conflict(api.put, task_id, step_body(step), says=("Completed", "nothing more can be started"))
    assert api.get(task_id) == task

    # The mesh is now at 1.18.7-r5, Running and free: a task to the same version is no upgrade.
    assert api.mesh(MESH_FLOW) == ("Running", TARGET)
    error = invalid(api.create, new_task(MESH_FLOW), says=("spec.targetVersion",))
    assert f"{TARGET} is not newer than the current version {TARGET}" in error.error_msg
    invalid(
        api.create, new_task(MESH_FLOW, "1.18.7-r1"), says=(f"not newer than the current version {TARGET}",)
    )


# --- (2) rollback ---------------------------------------------------------------------------------------


def test_rollback_after_a_partial_data_plane_migration(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    task = api.create(new_task(MESH_ROLLBACK))
    task_id = task["metadata"]["uid"]
    wait_for_job(api, task["status"]["jobId"])
    task, job = run_step(api, api.get(task_id), "ControlPlaneUpgrade")
    assert job["status"]["phase"] == "Success"
    task, job = run_step(api, task, "DataPlaneUpgrade", ["shop"])
    assert job["status"]["phase"] == "Success"
    assert (task["status"]["migratedNamespaces"], task["status"]["pendingNamespaces"]) == (
        ["shop"],
        ["payments"],
    )
    conflict(api.delete, task_id, says=("roll back or complete first", "DataPlaneUpgrade"))

    task, job = run_step(api, task, "Rollback")
    assert (job["spec"]["type"], job["status"]["phase"]) == ("Rollback", "Success")
    assert children_of(job) == [
        ("RevertNamespaces", "cluster r1"),
        ("RestartWorkloads", "cluster r1 / namespace shop / batch 1 of 1"),  # cart, web
        ("RestoreGateways", "cluster r1"),
        ("UninstallControlPlane", "cluster r1"),
        ("RevertNamespaces", "cluster r2"),
        ("RestartWorkloads", "cluster r2 / namespace shop / batch 1 of 1"),
        ("RestoreGateways", "cluster r2"),
        ("UninstallControlPlane", "cluster r2"),
    ]
    check_task(
        task, task_id=task_id, mesh_id=MESH_ROLLBACK, phase="RolledBack", step="Rollback",
        job_id=job["metadata"]["uid"], migrated=[], pending=["shop", "payments"],
    )  # fmt: skip
    for step in ("Rollback", "DataPlaneUpgrade", "PreCheck"):
        conflict(api.put, task_id, step_body(step), says=("RolledBack", "nothing more can be started"))
    assert api.mesh(MESH_ROLLBACK) == ("Running", SOURCE)

    # The mesh is back at its version and Running: a new task may start, from PreCheck.
    again = api.create(new_task(MESH_ROLLBACK, name="second-try"))
    assert again["metadata"]["uid"] != task_id
    assert (again["status"]["phase"], again["status"]["step"]) == ("Running", "PreCheck")
    job, _ = wait_for_job(api, again["status"]["jobId"])
    assert job["status"]["phase"] == "Success"
    # A rolled-back task and one that ran only pre-checks may be deleted.
    assert api.delete(task_id) == task
    deleted = api.delete(again["metadata"]["uid"])
    assert deleted["status"]["phase"] == "Waiting" and deleted["metadata"]["name"] == "second-try"


# --- (3) a failing step, then its retry ---------------------------------------------------------------------


def test_seeded_fault_fails_the_control_plane_upgrade_and_a_retry_succeeds(
    upgrade_server: ServerProcess,
) -> None:
    api = Api(upgrade_server, "root")
    task = api.create(new_task(MESH_FAULT))
    task_id = task["metadata"]["uid"]
    wait_for_job(api, task["status"]["jobId"])
    failing = api.step(api.get(task_id), "ControlPlaneUpgrade")
    job, _ = wait_for_job(api, failing["status"]["jobId"])
    cause = "istiod-1-18-7-r5 not ready after 300s"
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["reason"] == f"WaitControlPlaneReady cluster f1: {cause}"
    assert children_of(job) == control_plane_children(["f1"])
    assert phases(job) == ["Success", "Failed", "Initializing"]  # nothing runs after a failure
    leaf = job["spec"]["subjobs"][1]
    assert leaf["status"]["reason"] == cause
    assert api.job(leaf["metadata"]["uid"]) == leaf  # any node of a tree may be queried
    assert api.mesh(MESH_FAULT) == ("UpgradeFailed", SOURCE)
    task = api.get(task_id)
    check_task(
        task, task_id=task_id, mesh_id=MESH_FAULT, phase="Failed", step="ControlPlaneUpgrade",
        job_id=job["metadata"]["uid"], migrated=[], pending=["shop"], message=job["status"]["reason"],
    )  # fmt: skip
    conflict(
        api.put, task_id, step_body("DataPlaneUpgrade"),
        says=("DataPlaneUpgrade is not allowed now", "allowed now: ControlPlaneUpgrade, Rollback"),
    )  # fmt: skip
    conflict(api.delete, task_id, says=("roll back or complete first",))

    # The fault fired once: retrying the same step succeeds, with a new job.
    task, retry = run_step(api, task, "ControlPlaneUpgrade")
    assert retry["metadata"]["uid"] != job["metadata"]["uid"]
    assert (retry["status"]["phase"], retry["status"]["reason"]) == ("Success", "")
    assert api.mesh(MESH_FAULT) == ("Running", SOURCE)
    check_task(
        task, task_id=task_id, mesh_id=MESH_FAULT, phase="Waiting", step="ControlPlaneUpgrade",
        job_id=retry["metadata"]["uid"], migrated=[], pending=["shop"],
    )  # fmt: skip
    assert api.job(job["metadata"]["uid"])["status"]["phase"] == "Failed"  # the failed try is kept
    task, data = run_step(api, task, "DataPlaneUpgrade")
    assert data["status"]["phase"] == "Success" and task["status"]["pendingNamespaces"] == []


# --- (4) conflicts -----------------------------------------------------------------------------------------


def test_every_put_is_refused_while_a_step_runs(realtime_server: ServerProcess) -> None:
    api = Api(realtime_server, "root")
    task = api.create(new_task(MESH_BUSY))
    task_id = task["metadata"]["uid"]
    job, _ = wait_for_job(api, task["status"]["jobId"])
    assert job["status"]["phase"] == "Success"
    started = api.step(api.get(task_id), "ControlPlaneUpgrade")
    for step in ("DataPlaneUpgrade", "ControlPlaneUpgrade", "Rollback", "PreCheck"):
        conflict(
            api.put, task_id, step_body(step),
            says=("ControlPlaneUpgrade is still running", "wait for its job to finish"),
        )  # fmt: skip
    conflict(
        api.delete, task_id, says=("ControlPlaneUpgrade", "is still running", "wait for its job to finish")
    )
    assert api.get(task_id)["status"]["phase"] == "Running"
    assert api.mesh(MESH_BUSY) == ("Upgrading", SOURCE)

    job, seen = wait_for_job(api, started["status"]["jobId"])
    assert job["status"]["phase"] == "Success"
    # Watched while it ran: the first leaf done, the revision becoming ready, the gateways to come.
    assert any(
        snapshot["status"]["phase"] == "Running"
        and phases(snapshot) == ["Success", "Running", "Initializing"]
        and snapshot["status"]["completionTime"] == ""
        for snapshot in seen
    ), [phases(snapshot) for snapshot in seen]
    assert api.get(task_id)["status"]["phase"] == "Waiting"
    assert api.mesh(MESH_BUSY) == ("Running", SOURCE)
    task, _ = run_step(api, api.get(task_id), "Rollback")
    assert task["status"]["phase"] == "RolledBack"
    assert api.mesh(MESH_BUSY) == ("Running", SOURCE)


def test_control_plane_upgrade_needs_a_successful_pre_check(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    body = new_task(MESH_OLD_K8S)
    body["spec"]["currentStep"] = {"step": "ControlPlaneUpgrade"}
    conflict(api.create, body, says=("ControlPlaneUpgrade is not allowed now", "starts with PreCheck"))

    task = api.create(new_task(MESH_OLD_K8S))
    task_id = task["metadata"]["uid"]
    job, _ = wait_for_job(api, task["status"]["jobId"])
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["reason"].startswith("CheckClusterVersion cluster k1: ")
    assert "1.21" in job["status"]["reason"]
    task = api.get(task_id)
    assert (task["status"]["phase"], task["status"]["message"]) == ("Failed", job["status"]["reason"])
    conflict(
        api.put, task_id, step_body("ControlPlaneUpgrade"),
        says=("ControlPlaneUpgrade is not allowed now", "allowed now: PreCheck"),
    )  # fmt: skip
    conflict(api.put, task_id, step_body("Rollback"), says=("allowed now: PreCheck",))
    # A task that ran nothing but pre-checks may be deleted; the mesh is free again.
    assert api.delete(task_id) == task
    expect(refused(api.get, task_id), NOT_FOUND, task_id)
    assert api.job(job["metadata"]["uid"])["status"]["phase"] == "Failed"
    again = api.create(new_task(MESH_OLD_K8S))
    wait_for_job(api, again["status"]["jobId"])
    api.delete(again["metadata"]["uid"])


def test_no_task_on_a_mesh_that_is_not_running(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    conflict(
        api.create, new_task(MESH_BROKEN), says=("mesh-broken is UpgradeFailed", "only while it is Running")
    )
    missing = "7e570000-0000-4000-8000-0000000000ff"
    expect(refused(api.create, new_task(missing)), NOT_FOUND, missing)


# --- (5) invalid input --------------------------------------------------------------------------------------


MANDATORY = [
    (("metadata", "name"), "metadata.name: required"),
    (("spec", "meshId"), "spec.meshId: required"),
    (("spec", "upgradeStrategy"), "spec.upgradeStrategy: required"),
    (("spec", "targetVersion"), "spec.targetVersion: required"),
    (("spec", "targetType"), "spec.targetType: required"),
    (("spec", "currentStep"), "spec.currentStep: required"),
]
BAD_VALUES = [
    (("spec", "upgradeStrategy"), "RollingUpgrade", "spec.upgradeStrategy: must be one of Canary"),
    (("spec", "targetType"), "CrossCluster", "spec.targetType: must be one of InCluster"),
    (("spec", "currentStep"), {"step": "Upgrade"}, "spec.currentStep.step: must be one of PreCheck"),
    (("spec", "currentStep"), {"namespaces": ["shop"]}, "spec.currentStep.step: required"),
    (("spec", "targetVersion"), 1.18, "spec.targetVersion: must be a non-empty string"),
    (("spec", "meshId"), ["x"], "spec.meshId: must be a non-empty string"),
    (("metadata", "name"), "To_1_18", "metadata.name: "),
]


def _raw(server: ServerProcess, method: str, path: str, body: bytes, content_type: str) -> httpx.Response:
    """A request the SDK cannot make, signed with the root's AK/SK exactly as the SDK signs."""
    ak, sk = KEYS["root"]
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Host": f"127.0.0.1:{server.port}",
        "Content-Type": content_type,
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": date,
    }
    headers["Authorization"] = signing.sign(method, path, headers, body, ak, sk, sdk_date=date)
    return httpx.request(method, f"{server.url}{path}", headers=headers, content=body, timeout=10)


def _invalid_raw(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["errorCode"] == "ASM.01010001" and fragment in error["errorMsg"], error
    assert response.headers["X-Request-Id"]


def test_invalid_requests_are_400_naming_the_field(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    for (section, key), message in MANDATORY:
        body = new_task(MESH_INPUT)
        del body[section][key]
        invalid(api.create, body, says=(message,))
    for (section, key), value, message in BAD_VALUES:
        body = new_task(MESH_INPUT)
        body[section][key] = value
        invalid(api.create, body, says=(message,))
    invalid(api.create, {"kind": "MeshUpgrade", "metadata": {"name": "x"}}, says=("spec: required",))
    invalid(api.create, {"spec": new_task(MESH_INPUT)["spec"]}, says=("metadata",))
    invalid(api.create, {**new_task(MESH_INPUT), "kind": "Mesh"}, says=("kind: must be MeshUpgrade",))
    invalid(api.create, new_task(MESH_INPUT, "1.15.5-r4"), says=("spec.targetVersion", "not newer"))
    invalid(api.create, new_task(MESH_INPUT, "9.9.9-r9"), says=("spec.targetVersion", "not supported"))
    invalid(api.create, new_task(MESH_INPUT, "1.13.9-r5"), says=("spec.targetVersion", "not newer"))
    tasks_path = f"/v1/{PROJECT}/mesh-upgrade"
    good = json.dumps(new_task(MESH_INPUT)).encode()
    _invalid_raw(_raw(upgrade_server, "POST", tasks_path, good, "text/plain"), "Content-Type")
    _invalid_raw(
        _raw(upgrade_server, "POST", tasks_path, b'{"kind": "MeshUpgrade", ', "application/json"),
        "malformed JSON",
    )

    task = api.create(new_task(MESH_INPUT))
    task_id = task["metadata"]["uid"]
    wait_for_job(api, task["status"]["jobId"])
    task = api.get(task_id)
    for path, value, message in (
        (("spec", "targetVersion"), "1.18.7-r1", "spec.targetVersion: cannot be changed (is 1.18.7-r5)"),
        (("spec", "meshId"), MESH_FLOW, "spec.meshId: cannot be changed"),
        (("metadata", "name"), "renamed", "metadata.name: cannot be changed"),
    ):
        body = copy.deepcopy(task)
        body[path[0]][path[1]] = value
        body["spec"]["currentStep"] = {"step": "ControlPlaneUpgrade"}
        invalid(api.put, task_id, body, says=(message,))
    invalid(api.put, task_id, {"spec": {"targetVersion": TARGET}}, says=("spec.currentStep: required",))
    invalid(api.put, task_id, step_body("Rollout"), says=("spec.currentStep.step: must be one of",))
    invalid(
        api.put, task_id, step_body("PreCheck", ["shop"]),
        says=("spec.currentStep.namespaces: only allowed with step DataPlaneUpgrade",),
    )  # fmt: skip
    task_path = f"/v1/{PROJECT}/mesh-upgrade/{task_id}"
    put_body = json.dumps(step_body("ControlPlaneUpgrade")).encode()
    _invalid_raw(
        _raw(upgrade_server, "PUT", task_path, put_body, "application/x-www-form-urlencoded"), "Content-Type"
    )
    _invalid_raw(
        _raw(upgrade_server, "PUT", task_path, b"{'spec': {}}", "application/json"), "malformed JSON"
    )
    assert api.get(task_id) == task  # nothing refused changed the task

    task, _ = run_step(api, task, "ControlPlaneUpgrade")
    invalid(
        api.put, task_id, step_body("DataPlaneUpgrade", ["nope"]),
        says=("spec.currentStep.namespaces: nope is not an injected namespace", "pending: shop"),
    )  # fmt: skip
    invalid(api.put, task_id, step_body("DataPlaneUpgrade", ["shop", "shop"]), says=("shop is listed twice",))
    invalid(api.put, task_id, step_body("DataPlaneUpgrade", [""]), says=("spec.currentStep.namespaces[0]",))
    not_a_list = {"spec": {"currentStep": {"step": "DataPlaneUpgrade", "namespaces": "shop"}}}
    invalid(api.put, task_id, not_a_list, says=("spec.currentStep.namespaces: must be a list",))
    # The same body as JSON with a charset parameter is fine.
    response = _raw(
        upgrade_server, "PUT", task_path,
        json.dumps(step_body("DataPlaneUpgrade", ["shop"])).encode(),
        "application/json;charset=utf-8",
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["currentStep"] == {"step": "DataPlaneUpgrade", "namespaces": ["shop"]}
    job, _ = wait_for_job(api, response.json()["status"]["jobId"])
    assert job["status"]["phase"] == "Success"
    assert api.get(task_id)["status"]["migratedNamespaces"] == ["shop"]


# --- (6) authorization -------------------------------------------------------------------------------------


def test_tag_conditioned_user_upgrades_only_meshes_of_its_team(upgrade_server: ServerProcess) -> None:
    root, paula, gina = (Api(upgrade_server, who) for who in ("root", "paula", "gina"))
    # Allowed on a mesh tagged team=payments: the whole life of a pre-check-only task.
    mine = paula.create(new_task(MESH_PAY, name="pay-to-1-18"))
    mine_id = mine["metadata"]["uid"]
    job, _ = wait_for_job(paula, mine["status"]["jobId"])
    assert job["status"]["phase"] == "Success"
    assert paula.get(mine_id)["status"]["phase"] == "Waiting"

    # Denied on a mesh tagged team=shop, whatever the call.
    theirs = root.create(new_task(MESH_SHOP, name="shop-to-1-18"))
    theirs_id = theirs["metadata"]["uid"]
    denials = [
        refused(paula.create, new_task(MESH_SHOP, name="mine-now")),
        refused(paula.get, theirs_id),
        refused(paula.put, theirs_id, step_body("PreCheck")),
        refused(paula.delete, theirs_id),
    ]
    for denial in denials:
        expect(denial, FORBIDDEN, "asm:mesh:upgrade", MESH_SHOP, "implicit deny")
    expect(refused(paula.job, theirs["status"]["jobId"]), FORBIDDEN, "asm:mesh:getUpgradeJob")
    # An unknown task: it may upgrade some meshes, so it learns that this one does not exist.
    for call, args in (
        (paula.get, (MISSING_TASK,)),
        (paula.put, (MISSING_TASK, step_body("PreCheck"))),
        (paula.delete, (MISSING_TASK,)),
    ):
        expect(refused(call, *args), NOT_FOUND, MISSING_TASK)

    # No upgrade permission at all: 403 even for a task that does not exist (existence hidden).
    for task_id in (MISSING_TASK, theirs_id, mine_id, "not-a-task"):
        expect(refused(gina.get, task_id), FORBIDDEN, "asm:mesh:upgrade")
        expect(refused(gina.put, task_id, step_body("PreCheck")), FORBIDDEN, "asm:mesh:upgrade")
        expect(refused(gina.delete, task_id), FORBIDDEN, "asm:mesh:upgrade")
    expect(refused(gina.create, new_task(MESH_PAY, name="gina")), FORBIDDEN, "asm:mesh:upgrade")
    assert gina.job(mine["status"]["jobId"])["status"]["phase"] == "Success"  # reading jobs is allowed

    assert paula.delete(mine_id)["metadata"]["uid"] == mine_id
    expect(refused(paula.get, mine_id), NOT_FOUND)
    wait_for_job(root, theirs["status"]["jobId"])
    root.delete(theirs_id)


# --- (7) deleting a finished task -------------------------------------------------------------------------


def test_deleting_a_completed_task_keeps_its_jobs(upgrade_server: ServerProcess) -> None:
    api = Api(upgrade_server, "root")
    task = api.create(new_task(MESH_DELETE, name="patch-r5"))  # a patch hop within 1.18
    task_id = task["metadata"]["uid"]
    job_ids = [task["status"]["jobId"]]
    wait_for_job(api, job_ids[0])
    task = api.get(task_id)
    for step in ("ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete"):
        task, job = run_step(api, task, step)
        assert job["status"]["phase"] == "Success", job["status"]
        job_ids.append(job["metadata"]["uid"])
    assert task["status"]["phase"] == "Completed"

    deleted = api.delete(task_id)
    assert deleted == task  # the task as it was
    for call, args in (
        (api.get, (task_id,)),
        (api.put, (task_id, step_body("Rollback"))),
        (api.delete, (task_id,)),
    ):
        expect(refused(call, *args), NOT_FOUND, task_id)
    kinds = [api.job(job_id)["spec"]["type"] for job_id in job_ids]
    assert kinds == ["PreCheck", "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete"]
    for job_id in job_ids:
        assert api.job(job_id)["status"]["phase"] == "Success"
    # The mesh is at 1.18.7-r5 now and has no task: the same upgrade again is refused as such.
    invalid(api.create, new_task(MESH_DELETE), says=(f"not newer than the current version {TARGET}",))
