"""The engine's reads and writes: claims with leases, reaping, and finishing leaves.

No transaction stays open while a step runs: a leaf is claimed and started (in one commit, or two
when its tree is busy), its step runs through a driver with no connection held, and the finish is
one transaction (which may claim the worker's next leaf). PostgreSQL claims with
``FOR UPDATE SKIP LOCKED`` so workers never wait on each other; SQLite serialises writers with
``BEGIN IMMEDIATE`` (see store.db), which gives the same guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)

from meshup.jobs.model import JobNode
from meshup.store import jobs as job_store
from meshup.store import tables as t
from meshup.store.jobs import _NODE_COLUMNS, _node
from meshup.timefmt import as_utc

j = t.jobs

# The statements of every leaf are built once, with bind parameters: building and hashing a
# statement per call costs more Python time than running it, and a finishing transaction (which
# on SQLite holds the only write lock) runs a dozen of them.
_now = bindparam("b_now", type_=j.c.run_after.type)


@dataclass(frozen=True, slots=True)
class ClaimedLeaf:
    id: str
    root_id: str
    type: str
    target: str
    attempt: int
    payload: dict[str, Any]
    mesh_id: str
    project_id: str
    account_id: str  # of the mesh: whose clusters the step acts on
    after_expiry: bool = False  # an earlier claim of this leaf expired: this one is a reclaim
    took_expired_lease: bool = False  # ...and the reaper had not released it (an expiry to count)
    tree_locked: bool = False  # the claim holds its tree's lock too (as lock_tree would take it)
    started_at: datetime | None = None  # as stored before this claim's start (set on an earlier run)
    updated_at: datetime | None = None
    # Parent first, up to the root; None for a tree deeper than a root, a parent and a leaf.
    ancestors: tuple[str, ...] | None = ()


# The partial index ix_jobs_runnable serves a query only when the query repeats its predicate as
# written (``runnable``): with ``runnable IS true`` or ``runnable = 1`` SQLite and PostgreSQL both
# scan every stored job.
RUNNABLE = text("jobs.runnable")


_CLAIMABLE = and_(
    RUNNABLE,
    j.c.run_after <= _now,
    or_(j.c.lease_expires_at.is_(None), j.c.lease_expires_at < _now),
)


# Jobs belong to a mesh, and a mesh to an account (meshes are soft-deleted, so the row stays).
_account_of_mesh = select(t.meshes.c.account_id).where(t.meshes.c.id == j.c.mesh_id).scalar_subquery()
_parent = j.alias("parent")
# Spelled out: SQLite's RETURNING names the updated row's columns unqualified, which inside this
# subquery would name the parent's own.
_grandparent = (
    select(_parent.c.parent_id).where(_parent.c.id == literal_column("jobs.parent_id")).scalar_subquery()
)


_CANDIDATE = (
    select(j.c.id, j.c.lease_owner, j.c.lease_expired).where(_CLAIMABLE).order_by(j.c.run_after).limit(1)
)
_CANDIDATE_LOCKED = _CANDIDATE.with_for_update(skip_locked=True)
_tree_root = j.alias("tree_root")
# PostgreSQL: the leaf due longest whose tree nobody else holds, locking leaf and tree root at once
# without waiting. Workers spread over trees this way: a tree's ready leaves share one due time,
# and claimers that all took the oldest tree would queue on its lock at every finish.
_CANDIDATE_IN_FREE_TREE = (
    select(j.c.id, j.c.lease_owner, j.c.lease_expired)
    .join(_tree_root, _tree_root.c.id == j.c.root_id)
    .where(_CLAIMABLE)
    .order_by(j.c.run_after)
    .limit(1)
    .with_for_update(of=[j, _tree_root], skip_locked=True)
)
_CLAIM = (
    update(j)
    .where(j.c.id == bindparam("b_id"))
    .where(_CLAIMABLE)
    .values(
        lease_owner=bindparam("b_owner", type_=j.c.lease_owner.type),
        lease_expires_at=bindparam("b_until", type_=j.c.lease_expires_at.type),
        attempt=j.c.attempt + 1,
    )
    .returning(
        j.c.id,
        j.c.root_id,
        j.c.parent_id,
        _grandparent.label("grandparent_id"),
        j.c.started_at,
        j.c.updated_at,
        j.c.type,
        j.c.target,
        j.c.attempt,
        j.c.payload,
        j.c.mesh_id,
        j.c.project_id,
        _account_of_mesh.label("account_id"),
    )
)


def claim_candidates() -> list[Select[Any]]:
    """The queries a claim picks its leaf with (bind parameter ``b_now``), all through the
    runnable index: SQLite's, then PostgreSQL's two."""
    return [_CANDIDATE, _CANDIDATE_IN_FREE_TREE, _CANDIDATE_LOCKED]


def claim(conn: Connection, owner: str, now: datetime, lease: timedelta) -> ClaimedLeaf | None:
    """Lease the leaf that has been due longest. The candidate is read (and row-locked, skipping
    rows other workers are claiming) before it is leased, so the claim knows whether it takes over
    an expired lease: one the reaper released, or one nobody released yet (its owner is still set).

    On PostgreSQL a leaf whose tree is free comes first, and then the claim holds the tree lock
    (``tree_locked``); only when every due leaf is in a busy tree does it take one of those."""
    at = {"b_now": now}
    tree_locked = True  # SQLite: this writer holds the whole database
    if conn.dialect.name == "postgresql":
        found = conn.execute(_CANDIDATE_IN_FREE_TREE, at).first()
        tree_locked = found is not None
        if found is None:
            found = conn.execute(_CANDIDATE_LOCKED, at).first()
    else:
        found = conn.execute(_CANDIDATE, at).first()
    if found is None:
        return None
    row = conn.execute(_CLAIM, {**at, "b_id": found.id, "b_owner": owner, "b_until": now + lease}).first()
    if row is None:
        return None
    unreleased = found.lease_owner is not None  # an expired lease the reaper has not released yet
    parent, grandparent = row.parent_id, row.grandparent_id
    ancestors: tuple[str, ...] | None = None
    if parent is None or parent == row.root_id:
        ancestors = () if parent is None else (parent,)
    elif grandparent == row.root_id:
        ancestors = (parent, grandparent)
    return ClaimedLeaf(
        id=row.id,
        root_id=row.root_id,
        type=row.type,
        target=row.target or "",
        attempt=int(row.attempt),
        payload=dict(row.payload or {}),
        mesh_id=row.mesh_id,
        project_id=row.project_id,
        account_id=str(row.account_id or ""),
        after_expiry=bool(found.lease_expired) or unreleased,
        took_expired_lease=unreleased,
        tree_locked=tree_locked,
        started_at=as_utc(row.started_at) if row.started_at else None,
        updated_at=as_utc(row.updated_at),
        ancestors=ancestors,
    )


_START = (
    update(j)
    .where(j.c.id == bindparam("b_id"))
    .values(
        phase="Running",
        started_at=func.coalesce(j.c.started_at, _now),
        updated_at=_now,
        lease_expired=False,  # the reclaim was counted at the claim
    )
)


def start_leaf(conn: Connection, job_id: str, now: datetime) -> None:
    """A claimed leaf shows Running; in the transaction that re-derives its ancestors with it."""
    conn.execute(_START, {"b_id": job_id, "b_now": now})


_started = bindparam("b_started", type_=j.c.started_at.type)
_START_WITH_ANCESTORS = (
    update(j)
    .where(j.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        phase="Running",
        reason="",
        completed_at=None,
        started_at=case(
            (or_(j.c.started_at.is_(None), j.c.started_at > _started), _started), else_=j.c.started_at
        ),
        updated_at=case((j.c.updated_at < _now, _now), else_=j.c.updated_at),
        lease_expired=case((j.c.id == bindparam("b_id"), False), else_=j.c.lease_expired),
    )
)


def start_with_ancestors(
    conn: Connection, job_id: str, ancestors: Iterable[str], started: datetime, now: datetime
) -> None:
    """:func:`start_leaf` and the re-derivation of the leaf's ancestors in one statement, without
    reading the tree (``started``: the leaf's first start, or now). Each ancestor holds what
    ``jobs.model.derive`` gave it, and a running child makes a parent Running (no reason, not
    completed), its start the earlier of its own and the child's, its update the later of its own
    and ``now``; the same rules start the leaf. That holds unless the clock went back behind the
    leaf's own update time (the caller then reads and derives the tree)."""
    ids = [job_id, *ancestors]
    conn.execute(_START_WITH_ANCESTORS, {"b_id": job_id, "b_ids": ids, "b_started": started, "b_now": now})


_ROOT = select(j.c.id).where(j.c.id == bindparam("b_id"))
_LOCK_ROOT = _ROOT.with_for_update()
_TRY_LOCK_ROOT = _ROOT.with_for_update(skip_locked=True)
_LEASE = select(j.c.lease_owner, j.c.runnable).where(j.c.id == bindparam("b_id"))
_LOCK_LEASE = _LEASE.with_for_update()


def lock_tree(conn: Connection, root_id: str) -> None:
    """Serialise changes to one job tree (PostgreSQL): finishing siblings must see each other.

    Every transaction that changes several rows of a tree takes this lock first, so the lock
    order is always root before leaves and two finishes never deadlock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_ROOT, {"b_id": root_id})


def try_lock_tree(conn: Connection, root_id: str) -> bool:
    """:func:`lock_tree` without waiting: False when another transaction holds the tree. Taken
    while a leaf of the tree is already locked (the claim), so it must never wait: waiting there
    would reverse the root-before-leaves lock order."""
    if conn.dialect.name != "postgresql":
        return True  # SQLite: the writer already holds the whole database
    return conn.execute(_TRY_LOCK_ROOT, {"b_id": root_id}).first() is not None


_LOCK_ROOT_AND_LEAF = (
    select(j.c.id, j.c.lease_owner, j.c.runnable)
    .where(j.c.id.in_([bindparam("b_root"), bindparam("b_id")]))
    .order_by((j.c.id == bindparam("b_root")).desc())
    .with_for_update()
)


def lock_tree_and_leaf(conn: Connection, root_id: str, job_id: str, owner: str) -> bool:
    """:func:`lock_tree` then :func:`lock_leaf` (is the lease still ours?). On PostgreSQL in one
    statement: it sorts before it locks, so the root row is locked first, as everywhere."""
    if conn.dialect.name != "postgresql":
        return lock_leaf(conn, job_id, owner)
    rows = conn.execute(_LOCK_ROOT_AND_LEAF, {"b_root": root_id, "b_id": job_id}).all()
    leaf = next((row for row in rows if row.id == job_id), None)
    return leaf is not None and bool(leaf.runnable) and leaf.lease_owner == owner


def lock_leaf(conn: Connection, job_id: str, owner: str) -> bool:
    """Inside the finishing transaction: is the lease still ours? (row-locked on PostgreSQL)"""
    query = _LOCK_LEASE if conn.dialect.name == "postgresql" else _LEASE
    row = conn.execute(query, {"b_id": job_id}).first()
    return row is not None and bool(row.runnable) and row.lease_owner == owner


def extend_leases(conn: Connection, owner: str, job_ids: Iterable[str], until: datetime) -> None:
    ids = list(job_ids)
    if ids:
        conn.execute(
            update(j).where(j.c.id.in_(ids), j.c.lease_owner == owner).values(lease_expires_at=until)
        )


def expired_leases(conn: Connection, now: datetime, limit: int = 500) -> list[tuple[str, str]]:
    """(leaf id, root id) of runnable leaves whose lease has run out."""
    rows = conn.execute(
        select(j.c.id, j.c.root_id).where(RUNNABLE, j.c.lease_expires_at < now).limit(limit)
    ).all()
    return [(str(row.id), str(row.root_id)) for row in rows]


def release_expired(conn: Connection, job_id: str, now: datetime) -> int:
    """Release one expired lease so the leaf shows as queued and any worker takes it (the caller
    holds the tree lock, keeping the lock order root before leaves)."""
    result = conn.execute(
        update(j)
        .where(j.c.id == job_id, j.c.runnable.is_(True), j.c.lease_expires_at < now)
        .values(lease_owner=None, lease_expires_at=None, lease_expired=True)
    )
    return int(result.rowcount or 0)


def next_wake(conn: Connection) -> datetime | None:
    """The earliest time any runnable leaf becomes due (for deterministic runs)."""
    value = conn.execute(select(func.min(j.c.run_after)).where(RUNNABLE)).scalar()
    return value


_TREE_FULL = select(*_NODE_COLUMNS, j.c.payload, j.c.runnable).where(j.c.root_id == bindparam("b_root"))


def load_tree(conn: Connection, root_id: str) -> list[JobNode]:
    """The nodes of a tree without their payloads (re-deriving ancestors needs no more)."""
    return job_store.load_tree(conn, root_id)


@dataclass(frozen=True, slots=True)
class StoredTree:
    nodes: list[JobNode]
    payloads: dict[str, dict[str, Any]]
    runnable: frozenset[str]  # leaves a worker may claim already


def load_tree_with_payloads(conn: Connection, root_id: str) -> StoredTree:
    nodes: list[JobNode] = []
    payloads: dict[str, dict[str, Any]] = {}
    runnable: set[str] = set()
    for row in conn.execute(_TREE_FULL, {"b_root": root_id}):
        nodes.append(_node(row))
        payloads[row.id] = dict(row.payload or {})
        if row.runnable:
            runnable.add(row.id)
    return StoredTree(nodes, payloads, frozenset(runnable))


def _state(node: JobNode) -> dict[str, Any]:
    return {
        "b_id": node.id,
        "b_phase": node.phase.value,
        "b_reason": node.reason,
        "b_started": node.started_at,
        "b_completed": node.completed_at,
        "b_updated": node.updated_at,
    }


_STATE_VALUES = {
    "phase": bindparam("b_phase", type_=j.c.phase.type),
    "reason": bindparam("b_reason", type_=j.c.reason.type),
    "started_at": bindparam("b_started", type_=j.c.started_at.type),
    "completed_at": bindparam("b_completed", type_=j.c.completed_at.type),
    "updated_at": bindparam("b_updated", type_=j.c.updated_at.type),
}
_WRITE_STATE = update(j).where(j.c.id == bindparam("b_id")).values(**_STATE_VALUES)
_FINISH = (
    update(j)
    .where(j.c.id == bindparam("b_id"))
    .values(
        **_STATE_VALUES,
        result=bindparam("b_result", type_=j.c.result.type),
        runnable=False,
        lease_owner=None,
        lease_expires_at=None,
        run_after=None,
    )
)


def write_node_state(conn: Connection, node: JobNode) -> None:
    conn.execute(_WRITE_STATE, _state(node))


def finish_leaf(conn: Connection, node: JobNode, result: dict[str, Any] | None) -> None:
    """A leaf reached Success or Failed: record it and let go of it for good."""
    conn.execute(_FINISH, {**_state(node), "b_result": result})


def reschedule_leaf(
    conn: Connection, job_id: str, run_after: datetime, payload: dict[str, Any], now: datetime
) -> None:
    conn.execute(
        update(j)
        .where(j.c.id == job_id)
        .values(run_after=run_after, payload=payload, lease_owner=None, lease_expires_at=None, updated_at=now)
    )


_MAKE_RUNNABLE = (
    update(j)
    .where(
        j.c.id.in_(bindparam("b_ids", expanding=True)), j.c.runnable.is_(False), j.c.phase == "Initializing"
    )
    .values(runnable=True, run_after=_now)
)


def make_runnable(conn: Connection, job_ids: Iterable[str], now: datetime) -> None:
    ids = list(job_ids)
    if ids:
        conn.execute(_MAKE_RUNNABLE, {"b_ids": ids, "b_now": now})


def cancel_tree(conn: Connection, root_id: str) -> None:
    """Stop scheduling anything more of a tree (its remaining leaves stay Initializing)."""
    conn.execute(
        update(j)
        .where(j.c.root_id == root_id, j.c.runnable.is_(True), j.c.phase == "Initializing")
        .values(runnable=False, run_after=None)
    )


# -- scrape-time figures (engine metrics) -----------------------------------------------------------


def jobs_by_type_and_phase(conn: Connection) -> list[tuple[str, str, int]]:
    rows = conn.execute(select(j.c.type, j.c.phase, func.count()).group_by(j.c.type, j.c.phase)).all()
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]


def tasks_by_phase(conn: Connection) -> list[tuple[str, int]]:
    u = t.upgrade_tasks
    rows = conn.execute(select(u.c.phase, func.count()).group_by(u.c.phase)).all()
    return [(str(row[0]), int(row[1])) for row in rows]


@dataclass(frozen=True, slots=True)
class Backlog:
    waiting: int  # runnable leaves due now that no live lease holds
    oldest_due: datetime | None  # the earliest due time among them
    leased: int  # runnable leaves a worker holds a live lease on (running, or about to)


def backlog(conn: Connection, now: datetime) -> Backlog:
    """Read through the partial runnable index: cheap however many jobs are stored."""
    waiting = conn.execute(
        select(func.count(), func.min(j.c.run_after)).where(_CLAIMABLE), {"b_now": now}
    ).one()
    leased = conn.execute(select(func.count()).where(RUNNABLE, j.c.lease_expires_at >= now)).scalar_one()
    return Backlog(waiting=int(waiting[0]), oldest_due=waiting[1], leased=int(leased))
