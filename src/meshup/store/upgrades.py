"""Reads and writes of canary upgrade tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from meshup.store import tables as t

u = t.upgrade_tasks


def get_task(conn: Connection, task_id: str, *, for_update: bool = False) -> Any:
    query = select(u).where(u.c.id == task_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def active_task_for_mesh(conn: Connection, mesh_id: str) -> Any:
    return conn.execute(select(u).where(u.c.active_mesh_id == mesh_id)).first()


def insert_task(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(u).values(**values))


def update_task(conn: Connection, task_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(u).where(u.c.id == task_id).values(**values))


def delete_task(conn: Connection, task_id: str) -> None:
    conn.execute(u.delete().where(u.c.id == task_id))
