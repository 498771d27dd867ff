"""An in-memory cluster driver for tests: dictionaries, no database, nothing simulated.

Every operation is recorded in ``calls`` (operation, cluster, requester). ``checks_until_done``
makes each request answer "not yet" that many times before it is done (so Wait paths run), and
``ready_after`` does the same for control-plane readiness, which never comes for a revision in
``never_ready``. ``refusals`` maps an operation name to the reason it is refused with, and
``before_operation`` is called at the start of every operation (tests look at the database then).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from meshup.drivers.base import (
    INGRESS_GATEWAY,
    INGRESS_LABELS,
    INJECTION_LABEL,
    REVISION_LABEL,
    ClusterFacts,
    Gateway,
    Namespace,
    Nodes,
    Progress,
    Refused,
    Requester,
    Revision,
    Workload,
    done,
    gateway_base,
    gateway_name,
    pending,
)
from meshup.injection import is_injected

RETRY = 5.0  # seconds the fake suggests between checks


@dataclass
class FakeWorkload:
    replicas: int = 1
    sidecar: str | None = None


@dataclass
class FakeNamespace:
    labels: dict[str, str] = field(default_factory=dict)
    workloads: dict[str, FakeWorkload] = field(default_factory=dict)
    previous: dict[str, str] | None = None  # labels before a canary migration


@dataclass
class FakeCluster:
    kubernetes_version: str = "1.28"
    status: str = "Available"
    nodes: Nodes = field(default_factory=lambda: Nodes(count=3, cpu="8", memory="32Gi", master_labelled=3))
    namespaces: dict[str, FakeNamespace] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)  # revision -> version
    default_revision: str | None = None
    gateways: dict[str, Gateway] = field(default_factory=dict)
    crds: list[str] = field(default_factory=list)

    def facts(self, cluster_id: str) -> ClusterFacts:
        return ClusterFacts(
            cluster_id=cluster_id,
            kubernetes_version=self.kubernetes_version,
            status=self.status,
            nodes=self.nodes,
            namespaces=tuple(
                Namespace(
                    name,
                    dict(ns.labels),
                    tuple(Workload(w, spec.replicas, spec.sidecar) for w, spec in ns.workloads.items()),
                )
                for name, ns in self.namespaces.items()
            ),
            revisions={
                rev: Revision(rev, version, installed_at=None, ready_at=None)
                for rev, version in self.revisions.items()
            },
            default_revision=self.default_revision,
            gateways=tuple(self.gateways.values()),
            crds=tuple(self.crds),
        )


def healthy_cluster() -> FakeCluster:
    """What the fake reads for a cluster nobody set up: one injected namespace with one workload."""
    return FakeCluster(
        namespaces={
            "default": FakeNamespace({INJECTION_LABEL: "enabled"}, {"demo": FakeWorkload(replicas=2)})
        }
    )


Call = tuple[str, str, Requester]


class FakeDriver:
    """:class:`meshup.drivers.base.ClusterDriver` over :class:`FakeCluster` objects."""

    def __init__(
        self,
        *,
        checks_until_done: int = 0,
        ready_after: int = 0,
        expected_ready: float = 60.0,
    ) -> None:
        self.clusters: dict[str, FakeCluster] = {}
        self.calls: list[Call] = []
        self.checks_until_done = checks_until_done
        self.ready_after = ready_after
        self.expected_ready = expected_ready
        self.never_ready: set[str] = set()
        self.refusals: dict[str, str] = {}
        self.before_operation: Callable[[str], None] | None = None
        self._asked: Counter[tuple[str, str, str]] = Counter()

    # -- reads ----------------------------------------------------------------------------------

    def facts(self, cluster_id: str) -> ClusterFacts:
        cluster = self.clusters.get(cluster_id) or healthy_cluster()  # never written by a read
        return cluster.facts(cluster_id)

    def cluster(self, cluster_id: str) -> FakeCluster:
        return self.clusters.setdefault(cluster_id, healthy_cluster())

    def operations(self, name: str | None = None) -> list[Call]:
        return [call for call in self.calls if name is None or call[0] == name]

    # -- the request protocol -------------------------------------------------------------------

    def _begin(
        self, operation: str, cluster_id: str, asker: Requester, *, available: bool = True
    ) -> Progress | None:
        """Record the call; a refusal, or "not yet" for the first ``checks_until_done`` asks."""
        if self.before_operation is not None:
            self.before_operation(operation)
        self.calls.append((operation, cluster_id, asker))
        if operation in self.refusals:
            raise Refused(self.refusals[operation])
        cluster = self.clusters.get(cluster_id)
        if available and cluster is not None and cluster.status != "Available":
            raise Refused(f"cluster {cluster_id} is {cluster.status}")
        key = (operation, cluster_id, asker.job_id)
        self._asked[key] += 1
        if self._asked[key] <= self.checks_until_done:
            return pending(RETRY, f"{operation} in progress")
        return None

    def inspect(self, cluster_id: str, asker: Requester, *, need_available: bool = False) -> Progress:
        return self._begin("inspect", cluster_id, asker, available=need_available) or done()

    def ensure_control_plane(
        self, cluster_id: str, revision: str, version: str, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_control_plane", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        cluster.revisions.setdefault(revision, version)
        cluster.default_revision = cluster.default_revision or revision
        return done()

    def control_plane_ready(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        self._begin("control_plane_ready", cluster_id, asker)
        if revision not in self.cluster(cluster_id).revisions:
            raise Refused(f"cluster {cluster_id}: istiod-{revision} is not installed")
        checks = self._asked[("control_plane_ready", cluster_id, asker.job_id)] - 1
        if revision not in self.never_ready and checks >= self.ready_after:
            return done()
        return pending(RETRY, "becoming ready", elapsed=checks * RETRY, expected=self.expected_ready)

    def ensure_default_revision(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        waiting = self._begin("ensure_default_revision", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        if revision not in cluster.revisions:
            raise Refused(f"cluster {cluster_id}: revision {revision} is not installed")
        cluster.default_revision = revision
        for namespace in cluster.namespaces.values():
            namespace.previous = None
        return done()

    def ensure_control_plane_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        waiting = self._begin("ensure_control_plane_removed", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        users = [name for name, ns in cluster.namespaces.items() if ns.labels.get(REVISION_LABEL) == revision]
        if users and revision in cluster.revisions:
            raise Refused(f"cluster {cluster_id}: revision {revision} is used by {', '.join(users)}")
        cluster.revisions.pop(revision, None)
        if cluster.default_revision == revision:
            cluster.default_revision = None
        return done()

    def ensure_gateways(
        self, cluster_id: str, revision: str, like_revision: str | None, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_gateways", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        mine = [gw.name for gw in cluster.gateways.values() if gw.revision == revision]
        if mine:
            return done(tuple(mine))
        like = [gw for gw in cluster.gateways.values() if like_revision and gw.revision == like_revision]
        new = [
            Gateway(
                gateway_name(gateway_base(gw.name, like_revision), revision),
                revision,
                {**gw.labels, REVISION_LABEL: revision},
            )
            for gw in like
        ] or [
            Gateway(
                gateway_name(INGRESS_GATEWAY, revision),
                revision,
                {**INGRESS_LABELS, REVISION_LABEL: revision},
            )
        ]
        for gateway in new:
            cluster.gateways[gateway.name] = gateway
        return done(tuple(gw.name for gw in new))

    def ensure_gateways_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        waiting = self._begin("ensure_gateways_removed", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        removed = [name for name, gw in cluster.gateways.items() if gw.revision == revision]
        for name in removed:
            del cluster.gateways[name]
        return done(tuple(removed))

    def _namespace(self, cluster_id: str, namespace: str) -> FakeNamespace:
        found = self.cluster(cluster_id).namespaces.get(namespace)
        if found is None:
            raise Refused(f"cluster {cluster_id}: namespace {namespace} not found")
        return found

    def ensure_namespace_revision(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_namespace_revision", cluster_id, asker)
        if waiting:
            return waiting
        ns = self._namespace(cluster_id, namespace)
        if ns.labels.get(REVISION_LABEL) != revision or INJECTION_LABEL in ns.labels:
            ns.previous = {k: v for k, v in ns.labels.items() if k in (INJECTION_LABEL, REVISION_LABEL)}
            ns.labels.pop(INJECTION_LABEL, None)
            ns.labels[REVISION_LABEL] = revision
        return done()

    def ensure_namespace_reverted(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_namespace_reverted", cluster_id, asker)
        if waiting:
            return waiting
        ns = self._namespace(cluster_id, namespace)
        if ns.labels.get(REVISION_LABEL) == revision:
            del ns.labels[REVISION_LABEL]
            ns.labels.update(ns.previous if ns.previous is not None else {INJECTION_LABEL: "enabled"})
            ns.previous = None
        return done()

    def ensure_namespace_injection(
        self, cluster_id: str, namespace: str, revision: str | None, *, restart: bool, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_namespace_injection", cluster_id, asker)
        if waiting:
            return waiting
        cluster = self.cluster(cluster_id)
        ns = self._namespace(cluster_id, namespace)
        if revision is None:
            if INJECTION_LABEL not in ns.labels and REVISION_LABEL not in ns.labels:
                return done()
            ns.labels.pop(INJECTION_LABEL, None)
            ns.labels.pop(REVISION_LABEL, None)
            ns.previous = None
            version: str | None = None
        else:
            if revision not in cluster.revisions:
                raise Refused(f"cluster {cluster_id}: revision {revision} is not installed")
            if is_injected(Namespace(namespace, ns.labels), list(cluster.revisions)):
                return done()
            ns.labels.pop(INJECTION_LABEL, None)
            ns.labels[REVISION_LABEL] = revision
            version = cluster.revisions[revision]
        if restart:
            for workload in ns.workloads.values():
                workload.sidecar = version
        return done()

    def ensure_sidecars(
        self, cluster_id: str, namespace: str, workloads: Sequence[str], version: str, asker: Requester
    ) -> Progress:
        waiting = self._begin("ensure_sidecars", cluster_id, asker)
        if waiting:
            return waiting
        ns = self._namespace(cluster_id, namespace)
        missing = [name for name in workloads if name not in ns.workloads]
        if missing:
            raise Refused(
                f"cluster {cluster_id} / namespace {namespace}: workloads {', '.join(missing)} not found"
            )
        for name in workloads:
            ns.workloads[name].sidecar = version
        return done()


class FakeDrivers:
    """:class:`meshup.drivers.base.ClusterDrivers`: one :class:`FakeDriver` per account."""

    def __init__(self, make: Callable[[], FakeDriver] = FakeDriver) -> None:
        self.make = make
        self.accounts: dict[str, FakeDriver] = {}

    def for_account(self, account_id: str) -> FakeDriver:
        if account_id not in self.accounts:
            self.accounts[account_id] = self.make()
        return self.accounts[account_id]
