"""From an upgrade step to its job tree, per cluster and per namespace (asm-api.md §4).

Pure: the clusters are given as the driver's facts (``drivers.base.ClusterFacts``). Leaves carry in their payload what
their step function needs (see upgrades.steps); a parent with ``parallel`` runs its children at
once, any other parent one after another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meshup.drivers.base import ClusterFacts, revision_of
from meshup.injection import pointing_to
from meshup.jobs.model import JobNode, JobTree, Phase, TreeBuilder
from meshup.upgrades.model import Step

RESTART_BATCH_SIZE = 2

PRECHECK_PER_CLUSTER = (
    "CheckClusterStatus",
    "CheckClusterVersion",
    "CheckResources",
    "CheckDeprecatedCRDs",
    "CheckGatewayLabels",
    "CheckInjectionLabels",
)


@dataclass(slots=True)
class PlanContext:
    mesh_id: str
    mesh_name: str
    source_version: str
    target_version: str
    clusters: Sequence[ClusterFacts]
    now: datetime
    owner: dict[str, Any] = field(default_factory=dict)  # who is told when the root finishes

    def common(self, cluster: str | None) -> dict[str, Any]:
        return {
            "cluster": cluster,
            "meshId": self.mesh_id,
            "sourceVersion": self.source_version,
            "targetVersion": self.target_version,
            "sourceRevision": revision_of(self.source_version),
            "targetRevision": revision_of(self.target_version),
        }


def plan_step(step: Step, ctx: PlanContext, namespaces: Sequence[str] = ()) -> JobTree:
    """The job tree of one step, root first. ``namespaces``: what a DataPlaneUpgrade migrates."""
    tree = TreeBuilder(ctx.now)
    root_payload: dict[str, Any] = {**ctx.owner, "step": step.value}
    if step is Step.PRECHECK:
        root_payload["parallel"] = True
    root = tree.add(None, step.value, f"mesh {ctx.mesh_name}", root_payload)
    first_cluster = ctx.clusters[0].cluster_id if ctx.clusters else None
    if step is Step.PRECHECK:
        tree.add(root, "CheckUpgradePath", f"mesh {ctx.mesh_name}", ctx.common(first_cluster))
        for cluster in ctx.clusters:
            for check in PRECHECK_PER_CLUSTER:
                tree.add(root, check, f"cluster {cluster.cluster_id}", ctx.common(cluster.cluster_id))
    elif step is Step.CONTROL_PLANE:
        for cluster in ctx.clusters:
            target = f"cluster {cluster.cluster_id}"
            tree.add(root, "InstallControlPlane", target, ctx.common(cluster.cluster_id))
            tree.add(root, "WaitControlPlaneReady", target, ctx.common(cluster.cluster_id))
            tree.add(root, "InstallGateways", target, ctx.common(cluster.cluster_id))
    elif step is Step.DATA_PLANE:
        _plan_data_plane(tree, root, ctx, namespaces)
    elif step is Step.COMPLETE:
        for cluster in ctx.clusters:
            target = f"cluster {cluster.cluster_id}"
            source = {**ctx.common(cluster.cluster_id), "revision": revision_of(ctx.source_version)}
            tree.add(root, "SwitchDefaultRevision", target, ctx.common(cluster.cluster_id))
            tree.add(root, "UninstallControlPlane", target, source)
            tree.add(root, "RemoveGateways", target, source)
    elif step is Step.ROLLBACK:
        _plan_rollback(tree, root, ctx)
    return tree.tree()


def _batches(workloads: Sequence[str]) -> list[list[str]]:
    return [list(workloads[i : i + RESTART_BATCH_SIZE]) for i in range(0, len(workloads), RESTART_BATCH_SIZE)]


def _plan_data_plane(tree: TreeBuilder, root: str, ctx: PlanContext, namespaces: Sequence[str]) -> None:
    for name in namespaces:
        for cluster in ctx.clusters:
            namespace = next((ns for ns in cluster.namespaces if ns.name == name), None)
            if namespace is None:
                continue
            where = f"cluster {cluster.cluster_id} / namespace {name}"
            common = {**ctx.common(cluster.cluster_id), "namespace": name}
            migrate = tree.add(root, "MigrateNamespace", where, common)
            tree.add(migrate, "RelabelNamespace", where, common)
            batches = _batches([workload.name for workload in namespace.workloads])
            for index, batch in enumerate(batches, start=1):
                tree.add(
                    migrate,
                    "RestartWorkloads",
                    f"{where} / batch {index} of {len(batches)}",
                    {**common, "workloads": batch, "version": ctx.target_version},
                )
            tree.add(migrate, "VerifyProxies", where, common)


def _plan_rollback(tree: TreeBuilder, root: str, ctx: PlanContext) -> None:
    target_revision = revision_of(ctx.target_version)
    for cluster in ctx.clusters:
        where = f"cluster {cluster.cluster_id}"
        common = ctx.common(cluster.cluster_id)
        touched = pointing_to(cluster, target_revision)
        if touched:
            tree.add(root, "RevertNamespaces", where, {**common, "namespaces": [ns.name for ns in touched]})
            for namespace in touched:
                batches = _batches([workload.name for workload in namespace.workloads])
                for index, batch in enumerate(batches, start=1):
                    tree.add(
                        root,
                        "RestartWorkloads",
                        f"{where} / namespace {namespace.name} / batch {index} of {len(batches)}",
                        {
                            **common,
                            "namespace": namespace.name,
                            "workloads": batch,
                            "version": ctx.source_version,
                        },
                    )
        tree.add(root, "RestoreGateways", where, common)
        tree.add(root, "UninstallControlPlane", where, {**common, "revision": target_revision})


def migrated_by(root: JobNode, payloads: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Namespaces a DataPlaneUpgrade tree migrated completely (on every cluster that has them)."""
    outcome: dict[str, bool] = {}
    for child in root.children:
        if child.type != "MigrateNamespace":
            continue
        name = str(payloads.get(child.id, {}).get("namespace"))
        outcome[name] = outcome.get(name, True) and child.phase is Phase.SUCCESS
    return [name for name, ok in outcome.items() if ok]
