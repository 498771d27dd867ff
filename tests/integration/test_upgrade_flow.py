"""Whole canary upgrades through the services and the engine, with zero simulated time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshup.errors import Conflict, InvalidRequest, NotFound
from meshup.upgrades.schemas import parse_change
from tests.support.databases import database_url
from tests.support.flow import PROJECT, Flow, new_task, two_cluster_seed

SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as value:
        yield value


def sidecars(document: dict[str, Any]) -> dict[str, str | None]:
    return {
        f"{ns['name']}/{w['name']}": w.get("sidecarVersion")
        for ns in document["namespaces"]
        for w in ns.get("workloads", [])
    }


def test_full_canary_upgrade(url: str) -> None:
    flow = Flow.start(url, two_cluster_seed())
    task = flow.create(new_task())
    task_id = task["metadata"]["uid"]
    assert task["status"]["phase"] == "Running" and task["status"]["step"] == "PreCheck"
    assert task["status"]["pendingNamespaces"] == ["shop", "payments"]
    precheck = flow.job(task["status"]["jobId"])
    assert precheck["spec"]["type"] == "PreCheck" and precheck["status"]["phase"] == "Initializing"
    assert len(precheck["spec"]["subjobs"]) == 1 + 2 * 6

    flow.run()
    assert flow.job(task["status"]["jobId"])["status"]["phase"] == "Success"
    assert flow.get(task_id)["status"]["phase"] == "Waiting"
    assert flow.mesh().phase == "Running"

    task = flow.put(task_id, "ControlPlaneUpgrade")
    assert flow.mesh().phase == "Upgrading"
    with pytest.raises(Conflict, match="still running"):
        flow.put(task_id, "DataPlaneUpgrade")
    flow.run()
    control = flow.job(task["status"]["jobId"])
    assert control["status"]["phase"] == "Success"
    assert [c["spec"]["type"] for c in control["spec"]["subjobs"]] == [
        "InstallControlPlane",
        "WaitControlPlaneReady",
        "InstallGateways",
    ] * 2
    assert set(flow.cluster("c1")["controlPlane"]["revisions"]) == {"1-15-7-r1", "1-18-7-r5"}
    assert flow.mesh().phase == "Running"

    task = flow.put(task_id, "DataPlaneUpgrade", ["shop"])
    flow.run()
    data = flow.job(task["status"]["jobId"])
    assert data["status"]["phase"] == "Success"
    migrate = data["spec"]["subjobs"][0]
    assert migrate["spec"]["type"] == "MigrateNamespace"
    assert migrate["spec"]["target"] == "cluster c1 / namespace shop"
    assert [c["spec"]["type"] for c in migrate["spec"]["subjobs"]] == [
        "RelabelNamespace",
        "RestartWorkloads",
        "RestartWorkloads",
        "VerifyProxies",
    ]
    task = flow.get(task_id)
    assert task["status"]["migratedNamespaces"] == ["shop"]
    assert task["status"]["pendingNamespaces"] == ["payments"]
    c1 = flow.cluster("c1")
    assert sidecars(c1)["shop/cart"] == TARGET and sidecars(c1)["payments/ledger"] == SOURCE
    assert sidecars(flow.cluster("c2"))["shop/cart"] == TARGET
    shop = next(ns for ns in c1["namespaces"] if ns["name"] == "shop")
    assert shop["labels"].get("istio.io/rev") == "1-18-7-r5" and "istio-injection" not in shop["labels"]

    with pytest.raises(Conflict, match="allowed now: DataPlaneUpgrade, Rollback"):
        flow.put(task_id, "Complete")
    flow.put(task_id, "DataPlaneUpgrade")
    flow.run()
    task = flow.get(task_id)
    assert task["status"]["pendingNamespaces"] == [] and task["status"]["migratedNamespaces"] == [
        "shop",
        "payments",
    ]

    task = flow.put(task_id, "Complete")
    flow.run()
    assert flow.job(task["status"]["jobId"])["status"]["phase"] == "Success"
    task = flow.get(task_id)
    assert task["status"]["phase"] == "Completed"
    mesh = flow.mesh()
    assert (mesh.phase, mesh.version) == ("Running", TARGET)
    for cluster in ("c1", "c2"):
        document = flow.cluster(cluster)
        assert set(document["controlPlane"]["revisions"]) == {"1-18-7-r5"}
        assert document["controlPlane"]["defaultRevision"] == "1-18-7-r5"
        injected = {k: v for k, v in sidecars(document).items() if not k.startswith("tools/")}
        assert set(injected.values()) == {TARGET}
    assert sidecars(flow.cluster("c1"))["tools/debug"] is None  # never injected, never touched
    with pytest.raises(Conflict):
        flow.put(task_id, "Rollback")
    flow.delete(task_id)
    with pytest.raises(NotFound):
        flow.get(task_id)
    # Its jobs stay queryable.
    assert flow.job(task["status"]["jobId"])["status"]["phase"] == "Success"


def test_rollback_after_partial_data_plane_restores_the_clusters(url: str) -> None:
    flow = Flow.start(url, two_cluster_seed())
    before = {cluster: flow.cluster(cluster) for cluster in ("c1", "c2")}
    task_id = flow.create(new_task())["metadata"]["uid"]
    flow.run()
    flow.put(task_id, "ControlPlaneUpgrade")
    flow.run()
    flow.put(task_id, "DataPlaneUpgrade", ["shop"])
    flow.run()
    with pytest.raises(Conflict, match="DELETE|roll back or complete first"):
        flow.delete(task_id)
    task = flow.put(task_id, "Rollback")
    assert flow.mesh().phase == "RollingBack"
    flow.run()
    rollback = flow.job(task["status"]["jobId"])
    assert rollback["status"]["phase"] == "Success"
    task = flow.get(task_id)
    assert task["status"]["phase"] == "RolledBack" and task["status"]["migratedNamespaces"] == []
    assert (flow.mesh().phase, flow.mesh().version) == ("Running", SOURCE)
    for cluster in ("c1", "c2"):
        after = flow.cluster(cluster)
        assert sidecars(after) == sidecars(before[cluster])
        assert (
            after["controlPlane"]["revisions"].keys() == before[cluster]["controlPlane"]["revisions"].keys()
        )
        assert [ns["labels"] for ns in after["namespaces"]] == [
            ns["labels"] for ns in before[cluster]["namespaces"]
        ]
        assert sorted(g["name"] for g in after["gateways"]) == sorted(
            g["name"] for g in before[cluster]["gateways"]
        )
    # A finished task frees the mesh for a new one.
    flow.create(new_task())


def test_fault_fails_a_step_with_its_reason_and_a_retry_succeeds(url: str) -> None:
    fault = {
        "jobType": "WaitControlPlaneReady",
        "times": 1,
        "reason": "istiod-1-18-7-r5 not ready after 300s",
    }
    flow = Flow.start(url, two_cluster_seed([fault]))
    task_id = flow.create(new_task())["metadata"]["uid"]
    flow.run()
    task = flow.put(task_id, "ControlPlaneUpgrade")
    flow.run()
    job = flow.job(task["status"]["jobId"])
    assert job["status"]["phase"] == "Failed"
    assert (
        job["status"]["reason"] == "WaitControlPlaneReady cluster c1: istiod-1-18-7-r5 not ready after 300s"
    )
    task = flow.get(task_id)
    assert task["status"]["phase"] == "Failed" and task["status"]["message"] == job["status"]["reason"]
    assert flow.mesh().phase == "UpgradeFailed"
    retry = flow.put(task_id, "ControlPlaneUpgrade")
    assert retry["status"]["jobId"] != task["status"]["jobId"]
    flow.run()
    assert flow.job(retry["status"]["jobId"])["status"]["phase"] == "Success"
    assert flow.get(task_id)["status"]["phase"] == "Waiting"
    assert flow.mesh().phase == "Running"


def test_failed_precheck_names_cluster_and_cause(url: str) -> None:
    seed = two_cluster_seed()
    seed["accounts"][0]["clusters"][1]["kubernetesVersion"] = "1.21"
    flow = Flow.start(url, seed)
    task = flow.create(new_task())
    flow.run()
    job = flow.job(task["status"]["jobId"])
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["reason"].startswith("CheckClusterVersion cluster c2: ")
    assert "1.21" in job["status"]["reason"]
    with pytest.raises(Conflict):
        flow.put(task["metadata"]["uid"], "ControlPlaneUpgrade")


def test_create_refusals(url: str) -> None:
    flow = Flow.start(url, two_cluster_seed())
    with pytest.raises(InvalidRequest, match="spec.targetVersion"):
        flow.create(new_task("1.15.5-r4"))
    with pytest.raises(InvalidRequest, match="spec.targetVersion"):
        flow.create(new_task("9.9.9-r9"))
    body = new_task()
    del body["spec"]["upgradeStrategy"]
    with pytest.raises(InvalidRequest, match="spec.upgradeStrategy: required"):
        flow.create(body)
    body = new_task()
    body["spec"]["currentStep"] = {"step": "Complete"}
    with pytest.raises(Conflict, match="starts with PreCheck"):
        flow.create(body)
    body = new_task()
    body["spec"]["meshId"] = "9b2f4c1e-0000-4000-8000-00000000ffff"
    with pytest.raises(NotFound):
        flow.create(body)
    task_id = flow.create(new_task())["metadata"]["uid"]
    with pytest.raises(Conflict, match="already has an active upgrade task"):
        flow.create(new_task())
    body = {"spec": {"targetVersion": "1.18.7-r1", "currentStep": {"step": "PreCheck"}}}
    with pytest.raises(InvalidRequest, match="spec.targetVersion: cannot be changed"):
        flow.rt.upgrades.update(flow.caller, PROJECT, task_id, parse_change(body), "")
