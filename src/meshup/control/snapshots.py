"""Whole-database snapshots: every row of every table, kept in this process's memory.

Restoring deletes all rows and inserts the snapshot's, table by table in foreign-key order, in one
transaction; the same code serves SQLite and PostgreSQL. Not captured: ``epochs`` (cache
counters only ever move forward, so every process drops what it cached), ``settings`` (the
master-key check belongs to the database, not to its contents) and ``worker_stats`` (the running
workers' counters behind /metrics: telemetry of processes, which must keep counting up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Table, delete, func, insert, select, update

from meshup.store import identity as identity_store
from meshup.store import tables as t

KEPT = frozenset({t.epochs.name, t.settings.name, t.worker_stats.name})


def _tables() -> list[Table]:
    return [table for table in t.metadata.sorted_tables if table.name not in KEPT]


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    created_at: datetime
    rows: Mapping[str, Sequence[Mapping[str, Any]]]


def count_rows(conn: Connection) -> int:
    """The rows a snapshot would hold."""
    return sum(int(conn.execute(select(func.count()).select_from(table)).scalar_one()) for table in _tables())


def capture(conn: Connection, name: str, now: datetime) -> Snapshot:
    """Every row, read in one transaction (a consistent view)."""
    rows = {table.name: [dict(row) for row in conn.execute(select(table)).mappings()] for table in _tables()}
    return Snapshot(name, now, rows)


def restore(conn: Connection, snapshot: Snapshot | None) -> None:
    """Replace the contents of the database with ``snapshot`` (None: empty), in ``conn``'s transaction."""
    tables = _tables()
    for table in reversed(tables):
        conn.execute(delete(table))
    for table in tables:
        rows = snapshot.rows.get(table.name, ()) if snapshot is not None else ()
        if rows:
            conn.execute(insert(table), [dict(row) for row in rows])
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, tables)
    # Every process compares the epoch it cached at with the stored one: moving it on drops them all.
    conn.execute(update(t.epochs).values(value=t.epochs.c.value + 1))
    identity_store.bump_epoch(conn, identity_store.IAM_EPOCH)  # also when no IAM change made the row yet


def _reset_sequences(conn: Connection, tables: Sequence[Table]) -> None:
    """Inserting explicit ids does not move PostgreSQL's sequences; move them past the rows."""
    for table in tables:
        for column in table.primary_key.columns:
            if isinstance(column.type, Integer) and column.autoincrement is True:
                highest = select(func.coalesce(func.max(column), 0)).scalar_subquery()
                sequence = func.pg_get_serial_sequence(table.name, column.name)
                conn.execute(select(func.setval(sequence, highest + 1, False)))
