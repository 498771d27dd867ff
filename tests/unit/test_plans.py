"""Job trees per upgrade step, per cluster and namespace."""

from __future__ import annotations

from datetime import UTC, datetime

from meshup.drivers.base import ClusterFacts, Namespace, Nodes, Workload
from meshup.injection import injected_namespaces
from meshup.jobs.model import JobTree, Phase, assemble
from meshup.upgrades.model import Step
from meshup.upgrades.plans import PlanContext, migrated_by, plan_step

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def namespace(name: str, labels: dict[str, str], *workloads: str) -> Namespace:
    return Namespace(name, labels, tuple(Workload(w, 1, None) for w in workloads))


def cluster(cluster_id: str, *namespaces: Namespace) -> ClusterFacts:
    return ClusterFacts(cluster_id, "1.28", "Available", Nodes(3, "8", "32Gi", 3), namespaces)


C1 = cluster(
    "c1",
    namespace("shop", {"istio-injection": "enabled"}, "cart", "web", "api"),
    namespace("payments", {"istio.io/rev": "1-15-7-r1"}, "ledger"),
    namespace("tools", {}, "debug"),
    namespace("legacy", {"istio-injection": "disabled", "istio.io/rev": "1-15-7-r1"}, "old"),
)
C2 = cluster("c2", namespace("shop", {"istio-injection": "enabled"}, "cart"))


def context(*clusters: ClusterFacts) -> PlanContext:
    return PlanContext(
        "mesh-id",
        "mesh-prod",
        "1.15.7-r1",
        "1.18.7-r5",
        list(clusters),
        NOW,
        {"owner": "upgradeTask", "taskId": "t"},
    )


def shape(tree: JobTree) -> list[tuple[int, str, str]]:
    jobs = tree.jobs
    depth = {jobs[0].node.id: 0}
    out = []
    for job in jobs:
        if job.node.parent_id is not None:
            depth[job.node.id] = depth[job.node.parent_id] + 1
        out.append((depth[job.node.id], job.node.type, job.node.target))
    return out


def test_injected_namespaces_follow_istio_rules() -> None:
    assert injected_namespaces([C1, C2], "1.15.7-r1") == ("shop", "payments")


def test_precheck_runs_every_check_per_cluster_in_parallel() -> None:
    tree = plan_step(Step.PRECHECK, context(C1, C2))
    jobs = tree.jobs
    root = jobs[0]
    assert root.payload["parallel"] is True and root.payload["taskId"] == "t"
    assert shape(tree)[:3] == [
        (0, "PreCheck", "mesh mesh-prod"),
        (1, "CheckUpgradePath", "mesh mesh-prod"),
        (1, "CheckClusterStatus", "cluster c1"),
    ]
    assert len(jobs) == 1 + 1 + 2 * 6
    assert all(job.node.phase is Phase.INITIALIZING and job.root_id == root.node.id for job in jobs)
    assert {job.payload.get("cluster") for job in jobs[2:]} == {"c1", "c2"}


def test_control_plane_per_cluster() -> None:
    tree = plan_step(Step.CONTROL_PLANE, context(C1, C2))
    jobs = tree.jobs
    assert [t for _, t, _ in shape(tree)[1:]] == [
        "InstallControlPlane",
        "WaitControlPlaneReady",
        "InstallGateways",
    ] * 2
    assert (
        jobs[1].payload["targetRevision"] == "1-18-7-r5" and jobs[1].payload["sourceRevision"] == "1-15-7-r1"
    )


def test_data_plane_migrates_each_namespace_on_every_cluster_in_batches() -> None:
    tree = plan_step(Step.DATA_PLANE, context(C1, C2), ("shop",))
    jobs = tree.jobs
    assert shape(tree) == [
        (0, "DataPlaneUpgrade", "mesh mesh-prod"),
        (1, "MigrateNamespace", "cluster c1 / namespace shop"),
        (2, "RelabelNamespace", "cluster c1 / namespace shop"),
        (2, "RestartWorkloads", "cluster c1 / namespace shop / batch 1 of 2"),
        (2, "RestartWorkloads", "cluster c1 / namespace shop / batch 2 of 2"),
        (2, "VerifyProxies", "cluster c1 / namespace shop"),
        (1, "MigrateNamespace", "cluster c2 / namespace shop"),
        (2, "RelabelNamespace", "cluster c2 / namespace shop"),
        (2, "RestartWorkloads", "cluster c2 / namespace shop / batch 1 of 1"),
        (2, "VerifyProxies", "cluster c2 / namespace shop"),
    ]
    batches = [job.payload["workloads"] for job in jobs if job.node.type == "RestartWorkloads"]
    assert batches == [["cart", "web"], ["api"], ["cart"]]
    assert all(job.payload["version"] == "1.18.7-r5" for job in jobs if job.node.type == "RestartWorkloads")


def test_complete_removes_the_old_revision() -> None:
    tree = plan_step(Step.COMPLETE, context(C1))
    jobs = tree.jobs
    assert [t for _, t, _ in shape(tree)[1:]] == [
        "SwitchDefaultRevision",
        "UninstallControlPlane",
        "RemoveGateways",
    ]
    assert jobs[2].payload["revision"] == "1-15-7-r1"


def test_rollback_reverts_only_touched_namespaces_and_removes_the_canary() -> None:
    touched = cluster(
        "c1",
        namespace("shop", {"istio.io/rev": "1-18-7-r5"}, "cart"),
        namespace("payments", {"istio-injection": "enabled"}, "ledger"),
    )
    tree = plan_step(Step.ROLLBACK, context(touched, C2))
    jobs = tree.jobs
    assert [t for _, t, _ in shape(tree)[1:]] == [
        "RevertNamespaces",
        "RestartWorkloads",
        "RestoreGateways",
        "UninstallControlPlane",
        "RestoreGateways",
        "UninstallControlPlane",
    ]
    assert jobs[1].payload["namespaces"] == ["shop"]
    assert jobs[2].payload["version"] == "1.15.7-r1"
    assert jobs[4].payload["revision"] == "1-18-7-r5"


def test_migrated_by_needs_every_cluster() -> None:
    tree = plan_step(Step.DATA_PLANE, context(C1, C2), ("shop", "payments"))
    jobs = tree.jobs
    nodes = assemble([job.node for job in jobs])
    payloads = {job.node.id: job.payload for job in jobs}
    migrations = [n for n in nodes.values() if n.type == "MigrateNamespace"]
    for node in migrations:
        node.phase = Phase.SUCCESS
    c2_shop = next(n for n in migrations if n.target == "cluster c2 / namespace shop")
    c2_shop.phase = Phase.FAILED
    assert migrated_by(nodes[jobs[0].node.id], payloads) == ["payments"]
