"""Job trees of a mesh's life: CreateMesh installs its control plane, DeleteMesh removes it. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from meshup.drivers.base import ClusterFacts, revision_of
from meshup.injection import pointing_to
from meshup.jobs.model import JobTree, TreeBuilder

OWNER = "mesh"
CREATE = "CreateMesh"
DELETE = "DeleteMesh"


def plan_lifecycle(
    kind: str,
    mesh_id: str,
    mesh_name: str,
    version: str,
    clusters: Sequence[str],
    now: datetime,
    facts: Mapping[str, ClusterFacts] | None = None,
) -> JobTree:
    """Per cluster, one after another: checks and install (create) or gateways and uninstall (delete).

    ``facts`` (delete): the clusters as the driver sees them. Namespaces labelled ``istio.io/rev=<the
    mesh's revision>`` (as a canary upgrade leaves them) are reverted to their previous injection
    labels before the control plane is uninstalled, which refuses to remove a revision in use.
    """
    tree = TreeBuilder(now)
    root = tree.add(None, kind, f"mesh {mesh_name}", {"owner": OWNER, "meshId": mesh_id, "kind": kind})
    revision = revision_of(version)
    for cluster in clusters:
        common: dict[str, Any] = {
            "cluster": cluster,
            "meshId": mesh_id,
            "targetVersion": version,
            "targetRevision": revision,
        }
        target = f"cluster {cluster}"
        if kind == CREATE:
            for job_type in (
                "CheckClusterStatus",
                "CheckClusterVersion",
                "InstallControlPlane",
                "WaitControlPlaneReady",
                "InstallGateways",
            ):
                tree.add(root, job_type, target, common)
            continue
        tree.add(root, "RemoveGateways", target, {**common, "revision": revision})
        cluster_facts = (facts or {}).get(cluster)
        users = [ns.name for ns in pointing_to(cluster_facts, revision)] if cluster_facts else []
        if users:
            tree.add(root, "RevertNamespaces", target, {**common, "namespaces": users})
        tree.add(root, "UninstallControlPlane", target, {**common, "revision": revision})
    return tree.tree()


def has_installation(cluster: ClusterFacts, version: str) -> bool:
    """Whether a cluster holds the control plane or gateways of the mesh's revision."""
    revision = revision_of(version)
    return revision in cluster.revisions or bool(cluster.gateways_of(revision))
