"""The simulated cluster driver: clusters are JSON documents in the ``clusters`` table.

Each operation is one short transaction of its own (steps run with no transaction open): it locks
the cluster row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so two steps
on one cluster never lose each other's changes. Reads (:meth:`SimulatedDriver.facts`) never write:
a cluster id the account has never seen reads as healthy defaults, and its row is created by the
first operation that changes it.

The driver owns simulated time and faults (``drivers.simulated_timing``, ``drivers.simulated_faults``).
Operations are idempotent per job: ``clusters.operations`` records, per job id, when the driver
first saw the job and what a fault decided for it, and per operation when it started, when it is
due and whether it completed (and what it created or removed). A step resumed after a ``Wait``, or
run again after a crash, is the same request and gets the same answer; a new job (a retried step)
is a new request. Records are kept for :data:`RETENTION`::

    {"<job id>": {"jobType", "seenAt", "refused": reason | null,
                  "ops": {"<operation>/<target>": {"startedAt", "dueAt", "done", "names", "refused"}}}}

Document format: ``drivers.simulated_documents``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Text, Update, bindparam, cast, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meshup.clock import Clock
from meshup.drivers.base import (
    INGRESS_GATEWAY,
    INGRESS_LABELS,
    INJECTION_LABEL,
    REVISION_LABEL,
    ClusterFacts,
    Namespace,
    Progress,
    Refused,
    Requester,
    done,
    gateway_base,
    gateway_name,
    istiod_name,
    pending,
)
from meshup.drivers.simulated_documents import (
    Document,
    adopt_cluster_state,
    default_cluster_state,
    document_instant,
    document_time,
    facts_of,
    namespace_of,
    revision_entry,
    revisions,
)
from meshup.drivers.simulated_faults import Fault, take_never_ready, take_plain, take_workload
from meshup.drivers.simulated_timing import SimTiming
from meshup.injection import is_injected
from meshup.store import tables as t
from meshup.store.db import Database

RETENTION = timedelta(days=1)
"""How long the records of a job's operations are kept (far longer than any lease or wait)."""


@dataclass(slots=True)
class _Cluster:
    """A locked cluster row, as loaded (``loaded``) and as being changed."""

    state: Document
    faults: list[Fault]
    operations: dict[str, Any]
    loaded: tuple[Document, list[Fault], dict[str, Any]]


Body = Callable[[_Cluster, datetime, dict[str, Any]], Progress]
Change = Callable[[_Cluster, datetime], Sequence[str]]


class SimulatedDriver:
    """:class:`meshup.drivers.base.ClusterDriver` over the simulated clusters of one account."""

    def __init__(self, db: Database, clock: Clock, account_id: str, timing: SimTiming) -> None:
        self.db = db
        self.clock = clock
        self.account_id = account_id
        self.timing = timing
        # Per cluster, the document as this driver last committed it (a driver serves one step).
        self._committed: dict[str, Document] = {}

    # ---------------------------------------------------------------- reads (never write)

    def facts(self, cluster_id: str) -> ClusterFacts:
        """The cluster's facts; after an operation of this driver on it, as that operation left
        it (a check that has just inspected the cluster judges what it saw, without reading it
        back)."""
        committed = self._committed.get(cluster_id)
        return facts_of(cluster_id, committed if committed is not None else self.document(cluster_id))

    def document(self, cluster_id: str) -> Document:
        """A copy of the cluster's document (the defaults if the cluster was never written)."""
        found, text = self._read("state", cluster_id)
        return dict(_parsed(text, {})) if found else default_cluster_state()

    def faults(self, cluster_id: str) -> list[Fault]:
        return list(_parsed(self._read("faults", cluster_id)[1], []))

    def operations(self, cluster_id: str) -> dict[str, Any]:
        return dict(_parsed(self._read("operations", cluster_id)[1], {}))

    # ---------------------------------------------------------------- checks

    def inspect(self, cluster_id: str, asker: Requester, *, need_available: bool = False) -> Progress:
        return self._run(
            cluster_id,
            asker,
            self._timed("inspect", self.timing.check, "checking", lambda c, now: ()),
            available=need_available,
        )

    # ---------------------------------------------------------------- control plane

    def ensure_control_plane(
        self, cluster_id: str, revision: str, version: str, asker: Requester
    ) -> Progress:
        def change(c: _Cluster, now: datetime) -> Sequence[str]:
            control = c.state.setdefault("controlPlane", {})
            installed = control.setdefault("revisions", {})
            if revision in installed:
                return ()  # installed (ready, becoming ready, or stuck): keep it as it is
            never_ready = take_never_ready(c.faults, revision)
            ready_in = timedelta(seconds=self.timing.scaled(self.timing.control_plane_ready))
            entry = revision_entry(version, now, None if never_ready else now + ready_in)
            entry["neverReady"] = never_ready
            installed[revision] = entry
            if not control.get("defaultRevision"):
                control["defaultRevision"] = revision
            return ()

        key = f"install/{revision}"
        return self._run(
            cluster_id, asker, self._timed(key, 0.0, f"installing {istiod_name(revision)}", change)
        )

    def control_plane_ready(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        expected = self.timing.scaled(self.timing.control_plane_ready)
        note = f"waiting for {istiod_name(revision)}"

        def look(c: _Cluster, now: datetime, _job: dict[str, Any]) -> Progress:
            entry = revisions(c.state).get(revision)
            if entry is None:
                raise Refused(f"cluster {cluster_id}: {istiod_name(revision)} is not installed")
            installed_at = document_instant(entry.get("installedAt")) or now
            age = max(0.0, (now - installed_at).total_seconds())
            ready_at = document_instant(entry.get("readyAt"))
            if entry.get("neverReady") or ready_at is None:
                return pending(None, note, elapsed=age, expected=expected)
            remaining = (ready_at - now).total_seconds()
            if remaining <= 0:
                return done()
            return pending(remaining, note, elapsed=age, expected=expected)

        return self._run(cluster_id, asker, look)

    def ensure_default_revision(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            if revision not in revisions(c.state):
                raise Refused(f"cluster {cluster_id}: revision {revision} is not installed")
            c.state["controlPlane"]["defaultRevision"] = revision
            for namespace in c.state.get("namespaces", []):
                namespace.pop("previousInjection", None)
            return ()

        return self._run(cluster_id, asker, self._timed(f"default/{revision}", 0.0, "switching", change))

    def ensure_control_plane_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            installed = revisions(c.state)
            if revision not in installed:
                return ()
            users = [
                str(ns.get("name"))
                for ns in c.state.get("namespaces", [])
                if (ns.get("labels") or {}).get(REVISION_LABEL) == revision
            ]
            if users:
                raise Refused(
                    f"cluster {cluster_id}: cannot uninstall {istiod_name(revision)}: "
                    f"{_plural(len(users), 'namespace')} {', '.join(users)} still "
                    f"{'use' if len(users) > 1 else 'uses'} it ({REVISION_LABEL}={revision})"
                )
            del installed[revision]
            control = c.state["controlPlane"]
            if control.get("defaultRevision") == revision:
                control["defaultRevision"] = None
            return ()

        note = f"uninstalling {istiod_name(revision)}"
        return self._run(
            cluster_id, asker, self._timed(f"uninstall/{revision}", self.timing.uninstall, note, change)
        )

    # ---------------------------------------------------------------- gateways

    def ensure_gateways(
        self, cluster_id: str, revision: str, like_revision: str | None, asker: Requester
    ) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            gateways: list[dict[str, Any]] = c.state.setdefault("gateways", [])
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

        key = f"gateways/{revision}"
        body = self._timed(key, self.timing.gateway, "installing gateways", change)
        return self._run(cluster_id, asker, body)

    def ensure_gateways_removed(self, cluster_id: str, revision: str, asker: Requester) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            gateways = c.state.get("gateways", [])
            removed = [str(gw.get("name")) for gw in gateways if gw.get("revision") == revision]
            if removed:
                c.state["gateways"] = [gw for gw in gateways if gw.get("revision") != revision]
            return removed

        key = f"gateways-removed/{revision}"
        return self._run(
            cluster_id, asker, self._timed(key, self.timing.gateway, "removing gateways", change)
        )

    # ---------------------------------------------------------------- data plane

    def ensure_namespace_revision(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            ns = namespace_of(cluster_id, c.state, namespace)
            labels: dict[str, str] = ns.setdefault("labels", {})
            if labels.get(REVISION_LABEL) == revision and INJECTION_LABEL not in labels:
                return ()
            ns["previousInjection"] = {k: labels[k] for k in (INJECTION_LABEL, REVISION_LABEL) if k in labels}
            labels.pop(INJECTION_LABEL, None)
            labels[REVISION_LABEL] = revision
            return ()

        key = f"relabel/{namespace}/{revision}"
        return self._run(cluster_id, asker, self._timed(key, 0.0, f"relabelling {namespace}", change))

    def ensure_namespace_reverted(
        self, cluster_id: str, namespace: str, revision: str, asker: Requester
    ) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            ns = namespace_of(cluster_id, c.state, namespace)
            labels: dict[str, str] = ns.setdefault("labels", {})
            if labels.get(REVISION_LABEL) != revision:
                return ()
            previous = ns.pop("previousInjection", None)
            del labels[REVISION_LABEL]
            labels.update(previous if isinstance(previous, dict) else {INJECTION_LABEL: "enabled"})
            return ()

        key = f"revert/{namespace}/{revision}"
        return self._run(cluster_id, asker, self._timed(key, 0.0, f"reverting {namespace}", change))

    def ensure_sidecars(
        self, cluster_id: str, namespace: str, workloads: Sequence[str], version: str, asker: Requester
    ) -> Progress:
        def start(c: _Cluster, op: dict[str, Any]) -> None:
            # A workload fault is decided when the restart begins and reported when it would be ready.
            for workload in workloads:
                reason = take_workload(c.faults, namespace, workload)
                if reason is not None:
                    op["refused"] = (
                        f"cluster {cluster_id} / namespace {namespace}: workload {workload} "
                        f"did not become ready: {reason}"
                    )
                    return

        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            ns = namespace_of(cluster_id, c.state, namespace)
            by_name = {str(w.get("name")): w for w in ns.get("workloads", [])}
            missing = [name for name in workloads if name not in by_name]
            if missing:
                raise Refused(
                    f"cluster {cluster_id} / namespace {namespace}: "
                    f"{_plural(len(missing), 'workload')} {', '.join(missing)} not found"
                )
            for name in workloads:
                by_name[name]["sidecarVersion"] = version
            return ()

        key = f"restart/{namespace}/{','.join(workloads)}/{version}"
        note = f"restarting {', '.join(workloads)}"
        return self._run(cluster_id, asker, self._timed(key, self.timing.restart_batch, note, change, start))

    def ensure_namespace_injection(
        self, cluster_id: str, namespace: str, revision: str | None, *, restart: bool, asker: Requester
    ) -> Progress:
        def change(c: _Cluster, _now: datetime) -> Sequence[str]:
            ns = namespace_of(cluster_id, c.state, namespace)
            labels: dict[str, str] = ns.setdefault("labels", {})
            installed = revisions(c.state)
            if revision is None:
                if INJECTION_LABEL not in labels and REVISION_LABEL not in labels:
                    return ()
                labels.pop(INJECTION_LABEL, None)
                labels.pop(REVISION_LABEL, None)
                ns.pop("previousInjection", None)
                version: str | None = None
            else:
                if revision not in installed:
                    raise Refused(f"cluster {cluster_id}: revision {revision} is not installed")
                if is_injected(Namespace(namespace, labels), list(installed)):
                    return ()
                labels.pop(INJECTION_LABEL, None)
                labels[REVISION_LABEL] = revision
                version = str(installed[revision].get("version", "")) or None
            if restart:
                for workload in ns.get("workloads") or []:
                    workload["sidecarVersion"] = version
            return ()

        key = f"inject/{namespace}/{revision or '-'}/{'restart' if restart else 'keep'}"
        return self._run(cluster_id, asker, self._timed(key, 0.0, f"labelling {namespace}", change))

    # ---------------------------------------------------------------- simulation set-up

    def adopt(self, cluster_id: str, mesh_version: str) -> None:
        """Make the cluster look like a running mesh at ``mesh_version`` (idempotent; see
        :func:`meshup.drivers.simulated_documents.adopt_cluster_state`). Works on Unavailable clusters."""
        with self.db.write() as conn:
            now = self.clock.now()
            cluster = self._lock(conn, cluster_id, now)
            cluster.state = adopt_cluster_state(cluster.state, mesh_version, now)
            self._store(conn, cluster_id, cluster, now)

    # ---------------------------------------------------------------- the request protocol

    def _run(self, cluster_id: str, asker: Requester, body: Body, *, available: bool = True) -> Progress:
        """One operation in one transaction: the job's fault decision (made once per job), the
        cluster's availability (every time), then ``body``. A refusal still commits what was
        recorded (a fired fault, a started operation) but no change to the document."""
        refusal: str | None = None
        progress = done()
        self._committed.pop(cluster_id, None)
        with self.db.write() as conn:
            now = self.clock.now()
            cluster = self._lock(conn, cluster_id, now)
            job = self._job(cluster, asker, now)
            try:
                if job.get("refused"):
                    raise Refused(str(job["refused"]))
                if available:
                    _require_available(cluster_id, cluster.state)
                progress = body(cluster, now, job)
            except Refused as refused:
                refusal = str(refused)
                cluster.state = copy.deepcopy(cluster.loaded[0])  # as loaded: _job changes no state
            self._store(conn, cluster_id, cluster, now)
        self._committed[cluster_id] = cluster.state
        if refusal is not None:
            raise Refused(refusal)
        return progress

    def _job(self, cluster: _Cluster, asker: Requester, now: datetime) -> dict[str, Any]:
        """The job's record; on first sight the plain fault rules decide whether it is refused."""
        job = cluster.operations.get(asker.job_id)
        if job is None:
            horizon = now - RETENTION
            for job_id, record in list(cluster.operations.items()):
                seen = document_instant(record.get("seenAt"))
                if seen is None or seen < horizon:
                    del cluster.operations[job_id]
            job = {
                "jobType": asker.job_type,
                "seenAt": document_time(now),
                "refused": take_plain(cluster.faults, asker.job_type, asker.namespace),
                "ops": {},
            }
            cluster.operations[asker.job_id] = job
        assert isinstance(job, dict)
        return job

    def _timed(
        self,
        key: str,
        duration: float,
        note: str,
        change: Change,
        start: Callable[[_Cluster, dict[str, Any]], None] | None = None,
    ) -> Body:
        """An operation that takes ``duration`` simulated seconds from the job's first request for
        it, then applies ``change`` once (a later request gets the recorded result)."""
        expected = self.timing.scaled(duration)

        def body(cluster: _Cluster, now: datetime, job: dict[str, Any]) -> Progress:
            ops: dict[str, Any] = job.setdefault("ops", {})
            op = ops.get(key)
            if op is None:
                op = {
                    "startedAt": document_time(now),
                    "dueAt": document_time(now + timedelta(seconds=expected)),
                    "done": False,
                }
                if start is not None:
                    start(cluster, op)
                ops[key] = op
            if op.get("done"):
                return done(tuple(op.get("names") or ()))
            due = document_instant(op["dueAt"]) or now
            if now < due:
                started = document_instant(op["startedAt"]) or now
                elapsed = (now - started).total_seconds()
                return pending((due - now).total_seconds(), note, elapsed=elapsed, expected=expected)
            if op.get("refused"):
                raise Refused(str(op["refused"]))
            names = tuple(change(cluster, now))
            op["done"] = True
            op["names"] = list(names)
            return done(names)

        return body

    # ---------------------------------------------------------------- storage

    def _this(self, cluster_id: str) -> dict[str, str]:
        return {"b_account": self.account_id, "b_cluster": cluster_id}

    def _read(self, column: str, cluster_id: str) -> tuple[bool, str | None]:
        """One JSON column of the cluster's row as stored (found, text): reads never need the
        others, and the operations records grow with every job."""
        with self.db.read() as conn:
            row = conn.execute(_READS[column], self._this(cluster_id)).first()
        return (row is not None, row[0] if row is not None else None)

    def _lock(self, conn: Connection, cluster_id: str, now: datetime) -> _Cluster:
        row = conn.execute(_LOCK, self._this(cluster_id)).first()
        if row is None:
            self._create(conn, cluster_id, now)
            row = conn.execute(_LOCK, self._this(cluster_id)).one()
        # Parsed twice, once to change and once to compare with: far cheaper than a deep copy.
        return _Cluster(
            dict(_parsed(row[0], {})),
            list(_parsed(row[1], [])),
            dict(_parsed(row[2], {})),
            loaded=(dict(_parsed(row[0], {})), list(_parsed(row[1], [])), dict(_parsed(row[2], {}))),
        )

    def _create(self, conn: Connection, cluster_id: str, now: datetime) -> None:
        values = {
            "account_id": self.account_id,
            "id": cluster_id,
            "name": cluster_id,
            "state": default_cluster_state(),
            "faults": [],
            "operations": {},
            "created_at": now,
            "updated_at": now,
        }
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(postgresql.insert(t.clusters).values(**values).on_conflict_do_nothing())
        elif dialect == "sqlite":
            conn.execute(sqlite.insert(t.clusters).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(insert(t.clusters).values(**values))

    def _store(self, conn: Connection, cluster_id: str, cluster: _Cluster, now: datetime) -> None:
        """Write back only what changed (a document that did not change keeps its ``updated_at``)."""
        state, faults, operations = cluster.loaded
        values: dict[str, Any] = {}
        if cluster.state != state:
            values["state"] = cluster.state
            values["updated_at"] = now
        if cluster.faults != faults:
            values["faults"] = cluster.faults
        if cluster.operations != operations:
            values["operations"] = cluster.operations
        if values:
            params = {f"b_{name}": value for name, value in values.items()}
            conn.execute(_update_of(tuple(values)), {**params, **self._this(cluster_id)})


# Statements built once (see store.engine): the JSON columns as the stored text, parsed here.
_THIS_CLUSTER = (t.clusters.c.account_id == bindparam("b_account")) & (
    t.clusters.c.id == bindparam("b_cluster")
)
_COLUMNS = {name: cast(t.clusters.c[name], Text) for name in ("state", "faults", "operations")}
_READS = {name: select(column).where(_THIS_CLUSTER) for name, column in _COLUMNS.items()}
_LOCK = select(*_COLUMNS.values()).where(_THIS_CLUSTER).with_for_update()
_UPDATES: dict[tuple[str, ...], Update] = {}


def _update_of(columns: tuple[str, ...]) -> Update:
    """The update of these columns of a cluster's row (a handful of combinations, each built once)."""
    statement = _UPDATES.get(columns)
    if statement is None:
        values = {name: bindparam(f"b_{name}", type_=t.clusters.c[name].type) for name in columns}
        statement = _UPDATES[columns] = update(t.clusters).where(_THIS_CLUSTER).values(**values)
    return statement


def _parsed(text: str | None, empty: Any) -> Any:
    return orjson.loads(text) if text else empty


class SimulatedDrivers:
    """:class:`meshup.drivers.base.ClusterDrivers` of simulated clusters kept in ``db``."""

    def __init__(self, db: Database, clock: Clock, timing: SimTiming | None = None) -> None:
        self.db = db
        self.clock = clock
        self.timing = timing or SimTiming()

    def for_account(self, account_id: str) -> SimulatedDriver:
        return SimulatedDriver(self.db, self.clock, account_id, self.timing)


def _require_available(cluster_id: str, state: Document) -> None:
    status = state.get("status", "Available")
    if status != "Available":
        raise Refused(f"cluster {cluster_id} is {status}")


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


__all__ = ["RETENTION", "SimTiming", "SimulatedDriver", "SimulatedDrivers"]
