"""What a step may ask of a cluster: read facts, and "ensure X" operations.

Every ``ensure_*`` operation is idempotent: running it twice converges to the same cluster state,
because after a crash the engine may run a step again. Operations that cannot do what they are
asked (cluster unreachable or Unavailable, namespace/workload/revision missing, a revision still in
use) raise :class:`Refused` with a reason a user can act on and change nothing.

The simulated driver (``drivers.simulated``) keeps clusters in the database; a Kubernetes driver
implements the same protocol later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
INGRESS_GATEWAY = "istio-ingressgateway"
INGRESS_LABELS: Mapping[str, str] = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
"""Labels of the ingress gateway meshup installs (besides ``istio.io/rev``)."""


def revision_of(version: str) -> str:
    """Istio revision name of a mesh version: ``1.18.7-r5`` → ``1-18-7-r5``."""
    return version.replace(".", "-")


def istiod_name(revision: str) -> str:
    return f"istiod-{revision}"


def gateway_name(base: str, revision: str) -> str:
    """Gateways are per revision: ``istio-ingressgateway`` of ``1-18-7-r5`` → ``istio-ingressgateway-1-18-7-r5``."""
    return f"{base}-{revision}"


def gateway_base(name: str, revision: str | None) -> str:
    """The revision-independent part of a gateway name (inverse of :func:`gateway_name`)."""
    suffix = f"-{revision}" if revision else None
    return name[: -len(suffix)] if suffix and name.endswith(suffix) and len(name) > len(suffix) else name


def default_gateway_labels(revision: str) -> dict[str, str]:
    return {**INGRESS_LABELS, REVISION_LABEL: revision}


class Refused(Exception):
    """An operation the cluster cannot carry out; ``str(error)`` is the user-facing reason."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    replicas: int
    sidecar_version: str | None  # None: no sidecar injected


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    workloads: tuple[Workload, ...] = ()

    @property
    def injection(self) -> str | None:
        return self.labels.get(INJECTION_LABEL)

    @property
    def revision(self) -> str | None:
        return self.labels.get(REVISION_LABEL)


@dataclass(frozen=True, slots=True)
class Gateway:
    name: str
    revision: str | None
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Revision:
    name: str
    version: str
    installed_at: datetime | None
    ready_at: datetime | None  # None: not ready and no estimate
    never_ready: bool = False


@dataclass(frozen=True, slots=True)
class Nodes:
    count: int
    cpu: str  # Kubernetes quantity per node, e.g. "8" or "500m"
    memory: str  # Kubernetes quantity per node, e.g. "32Gi"
    master_labelled: int  # nodes labelled for the mesh control plane (istiod, gateways)


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """A read-only snapshot of one cluster, what pre-checks and verifications look at."""

    cluster_id: str
    kubernetes_version: str
    status: str  # Available | Unavailable
    nodes: Nodes
    namespaces: tuple[Namespace, ...] = ()
    revisions: Mapping[str, Revision] = field(default_factory=dict)
    default_revision: str | None = None
    gateways: tuple[Gateway, ...] = ()
    crds: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return self.status == "Available"

    def namespace(self, name: str) -> Namespace | None:
        return next((ns for ns in self.namespaces if ns.name == name), None)

    def gateways_of(self, revision: str | None) -> tuple[Gateway, ...]:
        return tuple(gw for gw in self.gateways if gw.revision == revision)


@dataclass(frozen=True, slots=True)
class ControlPlaneStatus:
    """Readiness of one control-plane revision."""

    installed: bool
    ready: bool
    ready_in: float | None  # expected seconds until ready; None if unknown or never
    age: float  # seconds since it was installed


class ClusterDriver(Protocol):
    """Operations steps perform on clusters. All take the cluster id; none commits anything."""

    def facts(self, cluster_id: str) -> ClusterFacts:
        """A snapshot of the cluster (works on Unavailable clusters too: pre-checks report them)."""
        ...

    def consume_fault(
        self,
        cluster_id: str,
        job_type: str,
        namespace: str | None = None,
        workload: str | None = None,
    ) -> str | None:
        """The reason of an injected fault that fires now for this step (and count it), or None."""
        ...

    def ensure_control_plane(self, cluster_id: str, revision: str, version: str) -> None:
        """Revision ``revision`` (of mesh ``version``) is installed; it becomes the default revision
        if the cluster has none. An existing installation is kept as it is."""
        ...

    def control_plane_status(self, cluster_id: str, revision: str) -> ControlPlaneStatus:
        """Readiness of a revision; raises Refused if the cluster is Unavailable."""
        ...

    def ensure_default_revision(self, cluster_id: str, revision: str) -> None:
        """The default revision (what ``istio-injection=enabled`` means) is ``revision``; the
        pre-migration label records of namespaces are dropped (the upgrade is committed)."""
        ...

    def ensure_control_plane_removed(self, cluster_id: str, revision: str) -> None:
        """Revision ``revision`` is not installed; Refused while a namespace points to it."""
        ...

    def ensure_gateways(self, cluster_id: str, revision: str, like_revision: str | None) -> list[str]:
        """Gateways of ``revision`` exist. If it has any, they are kept as they are; otherwise one is
        created per gateway of ``like_revision`` (same name base and labels), or the default ingress
        gateway if that has none. Returns the names of the revision's gateways."""
        ...

    def ensure_gateways_removed(self, cluster_id: str, revision: str) -> list[str]:
        """No gateway of ``revision`` exists. Returns the names removed now."""
        ...

    def ensure_namespace_revision(self, cluster_id: str, namespace: str, revision: str) -> None:
        """The namespace injects ``revision``: ``istio-injection`` removed, ``istio.io/rev`` set; the
        injection labels it had before are recorded so that a rollback can restore them."""
        ...

    def ensure_namespace_reverted(self, cluster_id: str, namespace: str, revision: str) -> None:
        """A namespace pointing to ``revision`` gets back the injection labels it had before
        (``istio-injection=enabled`` if nothing was recorded); others are left alone."""
        ...

    def ensure_sidecars(
        self, cluster_id: str, namespace: str, workloads: Sequence[str], version: str
    ) -> None:
        """The listed workloads of the namespace run proxy ``version`` (they were restarted)."""
        ...


class ClusterDrivers(Protocol):
    """Where services, plans and the engine get a driver: one factory, built by the composition root."""

    def for_account(self, account_id: str) -> ClusterDriver:
        """The driver for the clusters of one account (cluster ids are unique within an account)."""
        ...
