"""The simulated driver's cluster document (``clusters.state``): its format, defaults and reading.

Document::

    kubernetesVersion: "1.28"
    status: Available | Unavailable
    nodes: {count, cpu, memory, masterLabelled}          # cpu/memory per node, Kubernetes quantities
    namespaces:
      - name: shop
        labels: {istio-injection: enabled}
        workloads: [{name: cart, replicas: 3, sidecarVersion: 1.15.7-r1}]
        previousInjection: {istio-injection: enabled}   # only while migrated to a canary revision
    controlPlane:
      revisions: {"1-15-7-r1": {version, installedAt, readyAt, neverReady}}
      defaultRevision: "1-15-7-r1"
    gateways: [{name: istio-ingressgateway-1-15-7-r1, revision: "1-15-7-r1", labels: {...}}]
    crds: [virtualservices.networking.istio.io, ...]

The seed applier writes documents with these helpers; the simulated driver reads and changes them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from meshup.drivers.base import (
    INGRESS_GATEWAY,
    INJECTION_LABEL,
    REVISION_LABEL,
    ClusterFacts,
    Gateway,
    Namespace,
    Nodes,
    Refused,
    Revision,
    Workload,
    default_gateway_labels,
    gateway_name,
    revision_of,
)
from meshup.timefmt import as_utc, parse_rfc3339

Document = dict[str, Any]


def default_cluster_state() -> Document:
    """A healthy cluster for an id nobody declared (the simulated driver's defaults)."""
    return {
        "kubernetesVersion": "1.28",
        "status": "Available",
        "nodes": {"count": 3, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "default",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "demo", "replicas": 2, "sidecarVersion": None}],
            }
        ],
    }


def document_time(instant: datetime) -> str:
    """Instants inside a cluster document: RFC 3339 UTC with microseconds (simulated waits are short)."""
    return as_utc(instant).isoformat(timespec="microseconds").replace("+00:00", "Z")


def document_instant(value: Any) -> datetime | None:
    return None if value is None else parse_rfc3339(str(value))


def revision_entry(version: str, installed_at: datetime, ready_at: datetime | None) -> Document:
    """A control-plane revision in a cluster document (``controlPlane.revisions[<revision>]``)."""
    return {
        "version": version,
        "installedAt": document_time(installed_at),
        "readyAt": document_time(ready_at) if ready_at is not None else None,
        "neverReady": False,
    }


def adopt_cluster_state(state: Mapping[str, Any], mesh_version: str, now: datetime) -> Document:
    """The document of a cluster that runs a mesh at ``mesh_version`` (idempotent).

    The revision of the version is installed and ready and is the default revision, it has an
    ingress gateway, and every workload of a namespace that injects it (``istio-injection=enabled``,
    or ``istio.io/rev=<revision>`` without ``istio-injection``) whose sidecar version is not given
    runs ``mesh_version``. Everything else (other revisions, gateways, CRDs, faults) is kept.
    """
    doc = copy.deepcopy(dict(state))
    revision = revision_of(mesh_version)
    control = doc.setdefault("controlPlane", {})
    revisions = control.setdefault("revisions", {})
    entry = revisions.get(revision)
    if entry is None:
        revisions[revision] = revision_entry(mesh_version, now, now)
    else:
        entry["neverReady"] = False
        if entry.get("readyAt") is None or parse_rfc3339(str(entry["readyAt"])) > now:
            entry["readyAt"] = document_time(now)
        entry.setdefault("installedAt", entry["readyAt"])
    control["defaultRevision"] = revision
    gateways = doc.setdefault("gateways", [])
    if not any(gateway.get("revision") == revision for gateway in gateways):
        gateways.append(
            {
                "name": gateway_name(INGRESS_GATEWAY, revision),
                "revision": revision,
                "labels": default_gateway_labels(revision),
            }
        )
    doc.setdefault("crds", [])
    for namespace in doc.get("namespaces", []):
        labels = namespace.get("labels", {})
        injection = labels.get(INJECTION_LABEL)
        injects = injection == "enabled" or (injection is None and labels.get(REVISION_LABEL) == revision)
        if not injects:
            continue
        for workload in namespace.get("workloads", []):
            if workload.get("sidecarVersion") is None:
                workload["sidecarVersion"] = mesh_version
    return doc


def facts_of(cluster_id: str, state: Mapping[str, Any]) -> ClusterFacts:
    """The typed snapshot of a cluster document (tolerant of seeded documents lacking keys)."""
    nodes = state.get("nodes") or {}
    count = int(nodes.get("count", 3))
    return ClusterFacts(
        cluster_id=cluster_id,
        kubernetes_version=str(state.get("kubernetesVersion", "")),
        status=str(state.get("status", "Available")),
        nodes=Nodes(
            count=count,
            cpu=str(nodes.get("cpu", "8")),
            memory=str(nodes.get("memory", "32Gi")),
            master_labelled=int(nodes.get("masterLabelled", count)),
        ),
        namespaces=tuple(
            Namespace(
                name=str(ns.get("name")),
                labels={str(k): str(v) for k, v in (ns.get("labels") or {}).items()},
                workloads=tuple(
                    Workload(
                        name=str(w.get("name")),
                        replicas=int(w.get("replicas", 1)),
                        sidecar_version=None if w.get("sidecarVersion") is None else str(w["sidecarVersion"]),
                    )
                    for w in ns.get("workloads") or []
                ),
            )
            for ns in state.get("namespaces") or []
        ),
        revisions={
            name: Revision(
                name=name,
                version=str(entry.get("version", "")),
                installed_at=document_instant(entry.get("installedAt")),
                ready_at=document_instant(entry.get("readyAt")),
                never_ready=bool(entry.get("neverReady", False)),
            )
            for name, entry in revisions(state).items()
        },
        default_revision=(state.get("controlPlane") or {}).get("defaultRevision") or None,
        gateways=tuple(
            Gateway(
                name=str(gw.get("name")),
                revision=None if gw.get("revision") is None else str(gw["revision"]),
                labels={str(k): str(v) for k, v in (gw.get("labels") or {}).items()},
            )
            for gw in state.get("gateways") or []
        ),
        crds=tuple(str(name) for name in state.get("crds") or []),
    )


def revisions(state: Mapping[str, Any]) -> dict[str, Any]:
    found = (state.get("controlPlane") or {}).get("revisions") or {}
    assert isinstance(found, dict)
    return found


def namespace_of(cluster_id: str, state: Mapping[str, Any], name: str) -> dict[str, Any]:
    for ns in state.get("namespaces") or []:
        if ns.get("name") == name:
            assert isinstance(ns, dict)
            return ns
    raise Refused(f"cluster {cluster_id}: namespace {name} not found")


__all__ = [
    "Document",
    "adopt_cluster_state",
    "default_cluster_state",
    "document_instant",
    "document_time",
    "facts_of",
    "namespace_of",
    "revision_entry",
    "revisions",
]
