"""Job trees of a mesh's life: CreateMesh installs its control plane, DeleteMesh removes it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from meshup.drivers.base import ClusterFacts, revision_of
from meshup.jobs.model import JobNode, Phase
from meshup.store.jobs import NewJob

OWNER = "mesh"
CREATE = "CreateMesh"
DELETE = "DeleteMesh"


def _node(
    node_id: str,
    root_id: str,
    parent: str | None,
    position: int,
    job_type: str,
    target: str,
    payload: dict[str, Any],
    now: datetime,
) -> NewJob:
    node = JobNode(node_id, parent, position, job_type, target, Phase.INITIALIZING, "", now, now, None, None)
    return NewJob(node, root_id, payload)


def plan_lifecycle(
    kind: str,
    mesh_id: str,
    mesh_name: str,
    version: str,
    clusters: Sequence[str],
    now: datetime,
    facts: Mapping[str, ClusterFacts] | None = None,
) -> list[NewJob]:
    """Per cluster, one after another: checks and install (create) or gateways and uninstall (delete).

    ``facts`` (delete): the clusters' facts. Namespaces labelled ``istio.io/rev=<the
    mesh's revision>`` (as a canary upgrade leaves them) are reverted to their previous injection
    labels before the control plane is uninstalled, which refuses to remove a revision in use.
    """
    root_id = str(uuid.uuid4())
    jobs = [
        _node(
            root_id,
            root_id,
            None,
            0,
            kind,
            f"mesh {mesh_name}",
            {"owner": OWNER, "meshId": mesh_id, "kind": kind},
            now,
        )
    ]
    revision = revision_of(version)
    leaves: list[tuple[str, str, dict[str, Any]]] = []
    for cluster in clusters:
        common: dict[str, Any] = {
            "cluster": cluster,
            "meshId": mesh_id,
            "targetVersion": version,
            "targetRevision": revision,
        }
        target = f"cluster {cluster}"
        if kind == CREATE:
            leaves += [
                ("CheckClusterStatus", target, common),
                ("CheckClusterVersion", target, common),
                ("InstallControlPlane", target, common),
                ("WaitControlPlaneReady", target, common),
                ("InstallGateways", target, common),
            ]
        else:
            leaves.append(("RemoveGateways", target, {**common, "revision": revision}))
            found = (facts or {}).get(cluster)
            users = revision_users(found, revision) if found is not None else []
            if users:
                leaves.append(("RevertNamespaces", target, {**common, "namespaces": users}))
            leaves.append(("UninstallControlPlane", target, {**common, "revision": revision}))
    for position, (job_type, target, payload) in enumerate(leaves):
        jobs.append(_node(str(uuid.uuid4()), root_id, root_id, position, job_type, target, payload, now))
    return jobs


def revision_users(facts: ClusterFacts, revision: str) -> list[str]:
    """Names of the namespaces of a cluster labelled ``istio.io/rev=<revision>``."""
    return [namespace.name for namespace in facts.namespaces if namespace.revision == revision]


def has_installation(facts: ClusterFacts, version: str) -> bool:
    """Whether a cluster holds the control plane or gateways of the mesh's revision."""
    revision = revision_of(version)
    return revision in facts.revisions or bool(facts.gateways_of(revision))
