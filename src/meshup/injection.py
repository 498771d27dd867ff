"""Which namespaces carry a mesh's sidecars: Istio's labelling rules over a driver's cluster facts.

The one place for the rule; mesh lifecycle plans and upgrade plans both read it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshup.drivers.base import INJECTION_LABEL, REVISION_LABEL, ClusterFacts, Namespace, revision_of


def is_injected(namespace: Namespace, revisions: Sequence[str]) -> bool:
    """Istio's rule: ``istio-injection`` decides when present; otherwise ``istio.io/rev``."""
    injection = namespace.labels.get(INJECTION_LABEL)
    if injection is not None:
        return injection == "enabled"
    return namespace.labels.get(REVISION_LABEL) in revisions


def injected_namespaces(clusters: Sequence[ClusterFacts], version: str) -> tuple[str, ...]:
    """Names of the namespaces whose workloads carry sidecars of ``version``, in first-seen order."""
    revision = revision_of(version)
    names: list[str] = []
    for cluster in clusters:
        for namespace in cluster.namespaces:
            if is_injected(namespace, [revision]) and namespace.name not in names:
                names.append(namespace.name)
    return tuple(names)


def pointing_to(cluster: ClusterFacts, revision: str) -> tuple[Namespace, ...]:
    """Namespaces labelled ``istio.io/rev=<revision>`` (as a canary migration leaves them)."""
    return tuple(ns for ns in cluster.namespaces if ns.labels.get(REVISION_LABEL) == revision)
