"""What a step may ask of a cluster: read facts, and "ensure X" operations that may take time.

The protocol is shaped for a real cluster: asking for a change is quick, becoming ready takes
time. So an operation never blocks until the cluster is ready; it returns a :class:`Progress`:
done, or not yet with a suggested delay before asking again and a short note. The engine stores
the step's ``Wait`` and runs it again later; the repeated call is the same request, so every
operation is idempotent ("ensure", not "do") and converges after a crash.

Every operation receives a :class:`Requester` naming who asks (job type, job id, and namespace
where the step is about one). A driver may use it to make a repeated request idempotent (the
simulated driver keys its fault decisions and durations on it); a Kubernetes driver may ignore it.

Operations that cannot do what they are asked (cluster unreachable or Unavailable,
namespace/workload/revision missing, a revision still in use, an injected fault) raise
:class:`Refused` with a reason a user can act on.

Drivers own their transactions: a step runs with no database transaction open.
``ClusterDrivers.for_account`` is the one place services, plans and the engine get a driver.
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
class Requester:
    """Who asks for an operation: the leaf job (type and id) and, where relevant, its namespace.

    The same job asking again (a resumed or re-run step) is the same request.
    """

    job_type: str
    job_id: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an operation stands.

    ``done``: the cluster is as asked; ``names`` lists what the operation created or removed
    (gateways). Not done: ask again in about ``retry_in`` seconds (None: the driver cannot tell);
    ``note`` says what is awaited.
    ``elapsed`` is how long the awaited thing has been going and ``expected`` how long it usually
    takes (seconds; the step turns that into its timeout).
    """

    done: bool
    retry_in: float | None = None  # None: no estimate
    note: str = ""
    names: tuple[str, ...] = ()
    elapsed: float = 0.0
    expected: float = 0.0


def done(names: tuple[str, ...] = ()) -> Progress:
    return Progress(True, names=names)


def pending(retry_in: float | None, note: str, *, elapsed: float = 0.0, expected: float = 0.0) -> Progress:
    retry = None if retry_in is None else max(0.0, retry_in)
    return Progress(False, retry_in=retry, note=note, elapsed=elapsed, expected=expected)


class ClusterDriver(Protocol):
    """Operations steps perform on the clusters of one account. Each call is complete in itself
    (a driver opens and commits whatever it needs); ``cluster_id`` names the cluster."""

    def facts(self, cluster_id: str) -> ClusterFacts:
        """A snapshot of the cluster (works on Unavailable clusters too: pre-checks report them).
        Never writes: a cluster never seen before reads as healthy defaults."""
        ...

    def inspect(self, cluster_id: str, asker: Requester, *, need_available: bool = False) -> Progress:
        """A fresh view of the cluster for a check is ready (then read :meth:`facts`). Pre-checks
        inspect Unavailable clusters too (they report them); with ``need_available`` an Unavailable
        cluster is Refused."""
        ...

    def ensure_control_plane(
        self, cluster_id: str, revision: str, version: str, asker: Requester
    ) -> Progress:
        """Revision ``revision`` (of mesh ``version``) is installed (ready or not); it becomes the
        default revision if the cluster has none. An existing installation is kept as it is."""
        ...

    def control_plane_ready(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        """Revision ``revision`` is ready. Not done: ``elapsed`` is its age and ``expected`` how long
        a revision usually takes to get ready. Refused if it is not installed."""
        ...

    def ensure_default_revision(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        """The default revision (what ``istio-injection=enabled`` means) is ``revision``; the
        pre-migration label records of namespaces are dropped (the upgrade is committed)."""
        ...

    def ensure_control_plane_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        """Revision ``revision`` is not installed; Refused while a namespace points to it."""
        ...

    def ensure_gateways(
        self, cluster_id: str, revision: str, like_revision: str | None, asker: Requester
    ) -> Progress:
        """Gateways of ``revision`` exist. If it has any, they are kept as they are; otherwise one is
        created per gateway of ``like_revision`` (same name base and labels), or the default ingress
        gateway if that has none. Done: ``names`` are the revision's gateways."""
        ...

    def ensure_gateways_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        """No gateway of ``revision`` exists. Done: ``names`` are those this request removed."""
        ...

    def ensure_namespace_revision(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        """The namespace injects ``revision``: ``istio-injection`` removed, ``istio.io/rev`` set; the
        injection labels it had before are recorded so that a rollback can restore them."""
        ...

    def ensure_namespace_reverted(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        """A namespace pointing to ``revision`` gets back the injection labels it had before
        (``istio-injection=enabled`` if nothing was recorded); others are left alone."""
        ...

    def ensure_sidecars(
        self, cluster_id: str, namespace: str, workloads: Sequence[str], version: str, asker: Requester
    ) -> Progress:
        """The listed workloads of the namespace were restarted and run proxy ``version``, ready.
        Refused naming a workload that does not become ready."""
        ...

    def ensure_namespace_injection(
        self, cluster_id: str, namespace: str, revision: str | None, *, restart: bool, asker: Requester
    ) -> Progress:
        """Sidecar injection of a namespace, as a user sets it (not an upgrade step).

        ``revision`` None: the namespace injects nothing (``istio-injection`` and ``istio.io/rev``
        removed, a pre-migration record dropped). A revision: the namespace injects; one that
        already injects an installed revision (by Istio's rule) is kept as it is, any other gets
        ``istio.io/rev=<revision>``. With ``restart``, the workloads of a namespace whose labels
        changed are restarted to pick that up (sidecars of the revision's version, or none); the
        restart is requested, not awaited. Refused for a missing namespace or an uninstalled
        ``revision``."""
        ...


class ClusterDrivers(Protocol):
    """Where services, plans and the engine get a driver: one factory, built by the composition root."""

    def for_account(self, account_id: str) -> ClusterDriver:
        """The driver for the clusters of one account (cluster ids are unique within an account)."""
        ...
