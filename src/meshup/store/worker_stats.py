"""The ``worker_stats`` table: each worker process's heartbeat with its cumulative engine counters,
and the ``retired`` row that keeps the figures of stopped workers (see engine.stats)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from meshup.store import tables as t
from meshup.timefmt import as_utc

w = t.worker_stats

RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class WorkerRow:
    owner: str
    host: str
    pid: int
    started_at: datetime | None
    heartbeat_at: datetime
    stats: dict[str, Any]


def beat(
    conn: Connection,
    owner: str,
    stats: dict[str, Any],
    now: datetime,
    *,
    host: str,
    pid: int,
    started: datetime,
) -> bool:
    """Store a worker's figures with its heartbeat. False when its row was not there any more
    (folded into ``retired`` after a long silence): the row is created again, and the caller must
    from then on store only what it counted since (else the retired row would count it twice)."""
    updated = conn.execute(update(w).where(w.c.owner == owner).values(heartbeat_at=now, stats=stats))
    if updated.rowcount:
        return True
    conn.execute(
        insert(w).values(owner=owner, host=host, pid=pid, started_at=started, heartbeat_at=now, stats=stats)
    )
    return False


def workers(conn: Connection) -> tuple[list[WorkerRow], dict[str, Any]]:
    """The workers' rows, and the retired figures (empty when no worker has retired yet)."""
    rows: list[WorkerRow] = []
    retired: dict[str, Any] = {}
    for row in conn.execute(select(w)):
        if row.owner == RETIRED:
            retired = dict(row.stats or {})
            continue
        rows.append(
            WorkerRow(
                owner=str(row.owner),
                host=str(row.host),
                pid=int(row.pid),
                started_at=as_utc(row.started_at) if row.started_at is not None else None,
                heartbeat_at=as_utc(row.heartbeat_at),
                stats=dict(row.stats or {}),
            )
        )
    return rows, retired


def lock_retired(conn: Connection, empty: dict[str, Any]) -> dict[str, Any]:
    """The retired figures, locked (created as ``empty`` if missing). Every retirer takes this
    lock first, so two of them never fold one row twice."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(w).values(owner=RETIRED, host="", pid=0, stats=empty).on_conflict_do_nothing()
    )
    query = select(w.c.stats).where(w.c.owner == RETIRED)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return dict(conn.execute(query).scalar_one() or {})


def lock_retiring(
    conn: Connection, *, owners: Iterable[str] = (), silent_since: datetime | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(owner, figures) of the named workers and of those silent since ``silent_since``, locked."""
    condition: ColumnElement[bool] = w.c.owner.in_(list(owners))
    if silent_since is not None:
        condition = condition | (w.c.heartbeat_at < silent_since)
    query = select(w.c.owner, w.c.stats).where(condition, w.c.owner != RETIRED)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return [(str(row.owner), dict(row.stats or {})) for row in conn.execute(query)]


def replace_retired(conn: Connection, retired: dict[str, Any], gone: Iterable[str]) -> None:
    """The new retired figures, and the rows folded into them gone (in the caller's transaction)."""
    conn.execute(update(w).where(w.c.owner == RETIRED).values(stats=retired))
    conn.execute(delete(w).where(w.c.owner.in_(list(gone))))
