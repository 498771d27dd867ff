"""Run by tests/e2e/test_pytest_plugin.py in its own pytest process: a tool's test suite using
the meshup plugin (only its fixtures; no meshup test helpers)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from huaweicloudsdkasm.v1 import ListMeshesRequest
from huaweicloudsdkcore.sdk_response import SdkResponse

MESH = "5e57c0de-0000-4000-8000-000000000001"
TASKS = "/v1/{project_id}/mesh-upgrade"
TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
JOB = "/v1/{project_id}/mesh-job/{job_id}"


class RawJson(SdkResponse):
    openapi_types: dict[str, str] = {}
    attribute_map: dict[str, str] = {}


def call(client: Any, method: str, path: str, params: dict[str, str] | None = None, body: Any = None) -> Any:
    response = client.call_api(
        resource_path=path,
        method=method,
        path_params=params or {},
        header_params={"Content-Type": "application/json"},
        body=body,
        response_type=RawJson,
    )
    return response.to_json_object()


def start(client: Any, task: dict[str, Any], step: str) -> dict[str, Any]:
    task["spec"]["currentStep"] = {"step": step}
    return call(client, "PUT", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]}, task)  # type: ignore[no-any-return]


def job_phase(client: Any, task: dict[str, Any]) -> str:
    return str(call(client, "GET", JOB, {"job_id": task["status"]["jobId"]})["status"]["phase"])


def test_manual_clock_drives_an_upgrade_to_the_end(meshup: Any, meshup_asm_client: Any) -> None:
    began = time.monotonic()
    clock = meshup.clock()
    assert clock["mode"] == "manual"
    meshes = meshup_asm_client.list_meshes(ListMeshesRequest()).to_json_object()["items"]
    assert [m["metadata"]["uid"] for m in meshes] == [MESH]
    task = call(
        meshup_asm_client,
        "POST",
        TASKS,
        body={
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": "to-1-18"},
            "spec": {
                "meshId": MESH,
                "upgradeStrategy": "Canary",
                "targetVersion": "1.18.7-r5",
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        },
    )
    for step in ("PreCheck", "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete"):
        if step != "PreCheck":
            task = start(meshup_asm_client, task, step)
        ran = meshup.run_until_idle()
        assert ran["leaves"] > 0
        assert job_phase(meshup_asm_client, task) == "Success", step
        task = call(meshup_asm_client, "GET", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]})
    mesh = call(meshup_asm_client, "GET", "/v1/{project_id}/meshes/{mesh_id}", {"mesh_id": MESH})
    assert mesh["spec"]["version"] == "1.18.7-r5"
    # Simulated time passed (the control plane took its simulated seconds to get ready)...
    assert meshup.clock()["now"] > clock["now"]
    # ...but no wall time was spent waiting for it.
    assert time.monotonic() - began < 30


def test_a_fault_fails_the_step_and_says_so(meshup: Any, meshup_asm_client: Any) -> None:
    fault = meshup.add_fault("test-cluster-2", "InstallControlPlane", reason="disk full on the node", times=1)
    task = call(
        meshup_asm_client,
        "POST",
        TASKS,
        body={
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": "to-1-18"},
            "spec": {
                "meshId": MESH,
                "upgradeStrategy": "Canary",
                "targetVersion": "1.18.7-r5",
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        },
    )
    meshup.run_until_idle()
    task = start(meshup_asm_client, task, "ControlPlaneUpgrade")
    meshup.run_until_idle()
    job = call(meshup_asm_client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Failed"
    assert "disk full on the node" in job["status"]["reason"]
    assert [f["fired"] for f in meshup.faults("test-cluster-2") if f["id"] == fault["id"]] == [1]


@pytest.mark.meshup_seed("extra_seed.yaml")
def test_a_marker_adds_a_seed(meshup: Any, meshup_credentials: Any, meshup_asm_client: Any) -> None:
    assert meshup_credentials.project_id == "abcdefabcdefabcdefabcdefabcdef01"
    names = [
        m["metadata"]["name"]
        for m in meshup_asm_client.list_meshes(ListMeshesRequest()).to_json_object()["items"]
    ]
    assert names == ["other-mesh"]


def test_each_test_starts_from_the_seed(meshup: Any, meshup_asm_client: Any) -> None:
    """Runs last: the upgrade, the fault and the marker's seed of the tests before are gone."""
    mesh = call(meshup_asm_client, "GET", "/v1/{project_id}/meshes/{mesh_id}", {"mesh_id": MESH})
    assert (mesh["spec"]["version"], mesh["status"]["phase"]) == ("1.15.7-r1", "Running")
    assert meshup.faults() == []
    meshes = meshup_asm_client.list_meshes(ListMeshesRequest()).to_json_object()["items"]
    assert [m["metadata"]["uid"] for m in meshes] == [MESH]
