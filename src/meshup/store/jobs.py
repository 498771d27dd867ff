"""Job trees (one row per node, see tables.jobs): written whole when a step starts, read whole."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from meshup.jobs.model import JobNode, JobTree, Phase
from meshup.jobs.model import NewJob as NewJob  # the seed applier writes fixture trees with it
from meshup.store import tables as t
from meshup.timefmt import as_utc

_NODE_COLUMNS = (
    t.jobs.c.id,
    t.jobs.c.parent_id,
    t.jobs.c.position,
    t.jobs.c.type,
    t.jobs.c.target,
    t.jobs.c.phase,
    t.jobs.c.reason,
    t.jobs.c.created_at,
    t.jobs.c.updated_at,
    t.jobs.c.started_at,
    t.jobs.c.completed_at,
)


_TREE = select(*_NODE_COLUMNS).where(t.jobs.c.root_id == bindparam("root_id"))


_PHASES = {phase.value: phase for phase in Phase}


def _node(row: Any) -> JobNode:
    """A node from a row that starts with the columns of ``_NODE_COLUMNS``, in that order (read
    by position: the engine reads a whole tree in every finishing transaction)."""
    node_id, parent_id, position, type_, target, phase, reason, created, updated, started, completed = row[
        :11
    ]
    return JobNode(
        node_id,
        parent_id,
        position,
        type_,
        target or "",
        _PHASES[phase],
        reason or "",
        as_utc(created),
        as_utc(updated),
        as_utc(started) if started else None,
        as_utc(completed) if completed else None,
    )


def load_tree(conn: Connection, root_id: str) -> list[JobNode]:
    return [_node(row) for row in conn.execute(_TREE, {"root_id": root_id})]


def insert_nodes(conn: Connection, jobs: Iterable[NewJob], *, mesh_id: str, project_id: str) -> None:
    rows = [
        {
            "id": job.node.id,
            "root_id": job.root_id,
            "parent_id": job.node.parent_id,
            "position": job.node.position,
            "type": job.node.type,
            "target": job.node.target,
            "phase": job.node.phase.value,
            "reason": job.node.reason,
            "created_at": job.node.created_at,
            "updated_at": job.node.updated_at,
            "started_at": job.node.started_at,
            "completed_at": job.node.completed_at,
            "mesh_id": mesh_id,
            "project_id": project_id,
            "attempt": 0,
            "payload": job.payload,
        }
        for job in jobs
    ]
    if rows:
        conn.execute(insert(t.jobs), rows)


def delete_tree(conn: Connection, root_id: str) -> None:
    conn.execute(t.jobs.delete().where(t.jobs.c.root_id == root_id))


def root_of(conn: Connection, job_id: str) -> str | None:
    value = conn.execute(select(t.jobs.c.root_id).where(t.jobs.c.id == job_id)).scalar()
    return None if value is None else str(value)


class JobTreeRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, tree: JobTree, *, mesh_id: str, project_id: str) -> None:
        insert_nodes(self.conn, tree.jobs, mesh_id=mesh_id, project_id=project_id)

    def nodes(self, root_id: str) -> list[JobNode]:
        return load_tree(self.conn, root_id)
