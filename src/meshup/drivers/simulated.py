"""The simulated cluster driver: clusters are JSON documents in the ``clusters`` table.

The driver works on the connection (and transaction) it is given and never commits: the engine
runs one step per transaction, so a step's cluster changes, fault counters and the job's outcome
commit together. Every operation that writes locks the cluster row first (``SELECT … FOR UPDATE``
on PostgreSQL; SQLite write transactions are serialised anyway), so two steps on one cluster never
lose each other's changes. A cluster id the account has never seen is created with healthy
defaults on first reference.

Document (``clusters.state``)::

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

Faults (``clusters.faults``), each ``{jobType, times, reason, fired, ...extra}``; ``times`` null
fires always, otherwise while ``fired < times``; every firing increments ``fired``:

- plain (no extra key): the step of type ``jobType`` fails with ``reason`` before doing anything.
  Optional ``namespace: <name>`` limits it to that namespace's leaves.
- ``neverReady: true`` with ``jobType: WaitControlPlaneReady``: a revision installed while the
  fault fires never becomes ready (``WaitControlPlaneReady`` fails after its timeout). It is
  consumed by the installation (``InstallControlPlane``), once per revision installed; the revision
  stays stuck until it is uninstalled (a rollback). Optional ``revision: <rev>`` limits it to one
  revision.
- ``workload: <name>`` with ``jobType: RestartWorkloads``: that workload never gets ready after a
  restart, so the batch containing it fails naming it (``reason`` is appended). Optional
  ``namespace``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meshup.drivers.base import (
    INGRESS_GATEWAY,
    INGRESS_LABELS,
    INJECTION_LABEL,
    REVISION_LABEL,
    ClusterFacts,
    ControlPlaneStatus,
    Gateway,
    Namespace,
    Nodes,
    Refused,
    Revision,
    Workload,
    gateway_base,
    gateway_name,
    istiod_name,
)
from meshup.engine.outcome import SimTiming
from meshup.seed.apply import adopt_cluster_state, default_cluster_state, document_time, revision_entry
from meshup.store import tables as t
from meshup.timefmt import parse_rfc3339

T = TypeVar("T")
Document = dict[str, Any]


class SimulatedDriver:
    """:class:`meshup.drivers.base.ClusterDriver` over simulated clusters of one account."""

    def __init__(self, conn: Connection, account_id: str, now: datetime, timing: SimTiming) -> None:
        self.conn = conn
        self.account_id = account_id
        self.now = now
        self.timing = timing

    # ---------------------------------------------------------------- reads

    def document(self, cluster_id: str) -> Document:
        """A copy of the cluster's document (created with defaults if unknown)."""
        state, _ = self._load(cluster_id, lock=False)
        return state

    def faults(self, cluster_id: str) -> list[dict[str, Any]]:
        _, faults = self._load(cluster_id, lock=False)
        return faults

    def facts(self, cluster_id: str) -> ClusterFacts:
        state, _ = self._load(cluster_id, lock=False)
        return facts_of(cluster_id, state)

    def control_plane_status(self, cluster_id: str, revision: str) -> ControlPlaneStatus:
        state, _ = self._load(cluster_id, lock=False)
        _require_available(cluster_id, state)
        entry = _revisions(state).get(revision)
        if entry is None:
            return ControlPlaneStatus(installed=False, ready=False, ready_in=None, age=0.0)
        installed_at = _time(entry.get("installedAt")) or self.now
        age = max(0.0, (self.now - installed_at).total_seconds())
        ready_at = _time(entry.get("readyAt"))
        if entry.get("neverReady") or ready_at is None:
            return ControlPlaneStatus(installed=True, ready=False, ready_in=None, age=age)
        remaining = (ready_at - self.now).total_seconds()
        return ControlPlaneStatus(installed=True, ready=remaining <= 0, ready_in=max(0.0, remaining), age=age)

    # ---------------------------------------------------------------- faults

    def consume_fault(
        self,
        cluster_id: str,
        job_type: str,
        namespace: str | None = None,
        workload: str | None = None,
    ) -> str | None:
        _, faults = self._load(cluster_id, lock=True)
        for fault in faults:
            if _fires(fault, job_type, namespace, workload):
                fault["fired"] = int(fault.get("fired") or 0) + 1
                self._store(cluster_id, faults=faults)
                return str(fault.get("reason") or f"injected fault in {job_type}")
        return None

    # ---------------------------------------------------------------- control plane

    def ensure_control_plane(self, cluster_id: str, revision: str, version: str) -> None:
        state, faults = self._load(cluster_id, lock=True)
        _require_available(cluster_id, state)
        control = state.setdefault("controlPlane", {})
        revisions = control.setdefault("revisions", {})
        if revision in revisions:
            return  # installed (ready, becoming ready, or stuck): keep it as it is
        never_ready = _take_never_ready(faults, revision)
        ready_at = (
            None
            if never_ready
            else self.now + timedelta(seconds=self.timing.scaled(self.timing.control_plane_ready))
        )
        entry = revision_entry(version, self.now, ready_at)
        entry["neverReady"] = never_ready
        revisions[revision] = entry
        if not control.get("defaultRevision"):
            control["defaultRevision"] = revision
        self._store(cluster_id, state=state, faults=faults if never_ready else None)

    def ensure_default_revision(self, cluster_id: str, revision: str) -> None:
        def change(state: Document) -> None:
            if revision not in _revisions(state):
                raise Refused(f"cluster {cluster_id}: revision {revision} is not installed")
            state["controlPlane"]["defaultRevision"] = revision
            for namespace in state.get("namespaces", []):
                namespace.pop("previousInjection", None)

        self._mutate(cluster_id, change)

    def ensure_control_plane_removed(self, cluster_id: str, revision: str) -> None:
        def change(state: Document) -> None:
            revisions = _revisions(state)
            if revision not in revisions:
                return
            users = [
                str(ns.get("name"))
                for ns in state.get("namespaces", [])
                if (ns.get("labels") or {}).get(REVISION_LABEL) == revision
            ]
            if users:
                raise Refused(
                    f"cluster {cluster_id}: cannot uninstall {istiod_name(revision)}: "
                    f"{_plural(len(users), 'namespace')} {', '.join(users)} still "
                    f"{'use' if len(users) > 1 else 'uses'} it ({REVISION_LABEL}={revision})"
                )
            del revisions[revision]
            control = state["controlPlane"]
            if control.get("defaultRevision") == revision:
                control["defaultRevision"] = None

        self._mutate(cluster_id, change)

    # ---------------------------------------------------------------- gateways

    def ensure_gateways(self, cluster_id: str, revision: str, like_revision: str | None) -> list[str]:
        def change(state: Document) -> list[str]:
            gateways: list[dict[str, Any]] = state.setdefault("gateways", [])
            existing = [str(gw.get("name")) for gw in gateways if gw.get("revision") == revision]
            if existing:
                return existing
            templates = [gw for gw in gateways if like_revision and gw.get("revision") == like_revision]
            if templates:
                new = [
                    {
                        "name": gateway_name(gateway_base(str(gw.get("name")), like_revision), revision),
                        "revision": revision,
                        "labels": {**(gw.get("labels") or {}), REVISION_LABEL: revision},
                    }
                    for gw in templates
                ]
            else:
                new = [
                    {
                        "name": gateway_name(INGRESS_GATEWAY, revision),
                        "revision": revision,
                        "labels": {**INGRESS_LABELS, REVISION_LABEL: revision},
                    }
                ]
            taken = {str(gw.get("name")) for gw in gateways}
            clash = [gw["name"] for gw in new if gw["name"] in taken]
            if clash:
                raise Refused(
                    f"cluster {cluster_id}: gateway {clash[0]} exists but does not belong to revision {revision}"
                )
            gateways.extend(new)
            return [str(gw["name"]) for gw in new]

        return self._mutate(cluster_id, change)

    def ensure_gateways_removed(self, cluster_id: str, revision: str) -> list[str]:
        def change(state: Document) -> list[str]:
            gateways = state.get("gateways", [])
            removed = [str(gw.get("name")) for gw in gateways if gw.get("revision") == revision]
            if removed:
                state["gateways"] = [gw for gw in gateways if gw.get("revision") != revision]
            return removed

        return self._mutate(cluster_id, change)

    # ---------------------------------------------------------------- data plane

    def ensure_namespace_revision(self, cluster_id: str, namespace: str, revision: str) -> None:
        def change(state: Document) -> None:
            ns = _namespace(cluster_id, state, namespace)
            labels: dict[str, str] = ns.setdefault("labels", {})
            if labels.get(REVISION_LABEL) == revision and INJECTION_LABEL not in labels:
                return
            ns["previousInjection"] = {k: labels[k] for k in (INJECTION_LABEL, REVISION_LABEL) if k in labels}
            labels.pop(INJECTION_LABEL, None)
            labels[REVISION_LABEL] = revision

        self._mutate(cluster_id, change)

    def ensure_namespace_reverted(self, cluster_id: str, namespace: str, revision: str) -> None:
        def change(state: Document) -> None:
            ns = _namespace(cluster_id, state, namespace)
            labels: dict[str, str] = ns.setdefault("labels", {})
            if labels.get(REVISION_LABEL) != revision:
                return
            previous = ns.pop("previousInjection", None)
            del labels[REVISION_LABEL]
            labels.update(previous if isinstance(previous, dict) else {INJECTION_LABEL: "enabled"})

        self._mutate(cluster_id, change)

    def ensure_sidecars(
        self, cluster_id: str, namespace: str, workloads: Sequence[str], version: str
    ) -> None:
        def change(state: Document) -> None:
            ns = _namespace(cluster_id, state, namespace)
            by_name = {str(w.get("name")): w for w in ns.get("workloads", [])}
            missing = [name for name in workloads if name not in by_name]
            if missing:
                raise Refused(
                    f"cluster {cluster_id} / namespace {namespace}: "
                    f"{_plural(len(missing), 'workload')} {', '.join(missing)} not found"
                )
            for name in workloads:
                by_name[name]["sidecarVersion"] = version

        self._mutate(cluster_id, change)

    # ---------------------------------------------------------------- adoption

    def adopt(self, cluster_id: str, mesh_version: str) -> None:
        """Make the cluster look like a running mesh at ``mesh_version`` (idempotent; see
        :func:`meshup.seed.apply.adopt_cluster_state`). Works on Unavailable clusters too."""
        self._mutate(
            cluster_id,
            lambda state: state.update(adopt_cluster_state(state, mesh_version, self.now)),
            require_available=False,
        )

    # ---------------------------------------------------------------- storage

    def _mutate(
        self, cluster_id: str, change: Callable[[Document], T], *, require_available: bool = True
    ) -> T:
        """Lock, change a copy, write it back only if it differs. A Refused change writes nothing."""
        state, _ = self._load(cluster_id, lock=True)
        if require_available:
            _require_available(cluster_id, state)
        before = copy.deepcopy(state)
        result = change(state)
        if state != before:
            self._store(cluster_id, state=state)
        return result

    def _where(self, cluster_id: str) -> Any:
        return (t.clusters.c.account_id == self.account_id) & (t.clusters.c.id == cluster_id)

    def _load(self, cluster_id: str, *, lock: bool) -> tuple[Document, list[dict[str, Any]]]:
        query = select(t.clusters.c.state, t.clusters.c.faults).where(self._where(cluster_id))
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            self._create(cluster_id)
            row = self.conn.execute(query).one()
        return copy.deepcopy(dict(row.state)), copy.deepcopy(list(row.faults or []))

    def _create(self, cluster_id: str) -> None:
        values = {
            "account_id": self.account_id,
            "id": cluster_id,
            "name": cluster_id,
            "state": default_cluster_state(),
            "faults": [],
            "created_at": self.now,
            "updated_at": self.now,
        }
        dialect = self.conn.dialect.name
        if dialect == "postgresql":
            self.conn.execute(postgresql.insert(t.clusters).values(**values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            self.conn.execute(sqlite.insert(t.clusters).values(**values).on_conflict_do_nothing())
        else:
            self.conn.execute(insert(t.clusters).values(**values))

    def _store(
        self, cluster_id: str, *, state: Document | None = None, faults: list[dict[str, Any]] | None = None
    ) -> None:
        values: dict[str, Any] = {"updated_at": self.now}
        if state is not None:
            values["state"] = state
        if faults is not None:
            values["faults"] = faults
        self.conn.execute(update(t.clusters).where(self._where(cluster_id)).values(**values))


# -------------------------------------------------------------------- document helpers


def facts_of(cluster_id: str, state: Document) -> ClusterFacts:
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
                installed_at=_time(entry.get("installedAt")),
                ready_at=_time(entry.get("readyAt")),
                never_ready=bool(entry.get("neverReady", False)),
            )
            for name, entry in _revisions(state).items()
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


def _revisions(state: Document) -> dict[str, Any]:
    revisions = (state.get("controlPlane") or {}).get("revisions") or {}
    assert isinstance(revisions, dict)
    return revisions


def _namespace(cluster_id: str, state: Document, name: str) -> dict[str, Any]:
    for ns in state.get("namespaces") or []:
        if ns.get("name") == name:
            assert isinstance(ns, dict)
            return ns
    raise Refused(f"cluster {cluster_id}: namespace {name} not found")


def _require_available(cluster_id: str, state: Document) -> None:
    status = state.get("status", "Available")
    if status != "Available":
        raise Refused(f"cluster {cluster_id} is {status}")


def _remaining(fault: dict[str, Any]) -> bool:
    times = fault.get("times")
    return times is None or int(fault.get("fired") or 0) < int(times)


def _fires(fault: dict[str, Any], job_type: str, namespace: str | None, workload: str | None) -> bool:
    if fault.get("jobType") != job_type or fault.get("neverReady"):
        return False
    if fault.get("workload") != workload:  # plain faults have none; workload faults name one
        return False
    scope = fault.get("namespace")
    if scope is not None and scope != namespace:
        return False
    return _remaining(fault)


def _take_never_ready(faults: list[dict[str, Any]], revision: str) -> bool:
    """Consume a ``neverReady`` fault for a revision being installed, if one fires."""
    for fault in faults:
        if (
            fault.get("jobType") == "WaitControlPlaneReady"
            and fault.get("neverReady")
            and fault.get("revision") in (None, revision)
            and _remaining(fault)
        ):
            fault["fired"] = int(fault.get("fired") or 0) + 1
            return True
    return False


def _time(value: Any) -> datetime | None:
    return None if value is None else parse_rfc3339(str(value))


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


__all__ = ["SimulatedDriver", "document_time", "facts_of"]
