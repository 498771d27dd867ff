"""Reads and writes of meshes and simulated clusters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from meshup.store import tables as t


def mesh_by_name(conn: Connection, project_id: str, name: str) -> Any:
    """The live mesh of that name (deleted meshes free their names)."""
    return conn.execute(
        select(t.meshes).where(
            t.meshes.c.project_id == project_id, t.meshes.c.name == name, t.meshes.c.deleted_at.is_(None)
        )
    ).first()


def live_meshes(conn: Connection, project_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(t.meshes)
            .where(t.meshes.c.project_id == project_id, t.meshes.c.deleted_at.is_(None))
            .order_by(t.meshes.c.created_at, t.meshes.c.name)
        )
    )


def mesh_by_id(conn: Connection, mesh_id: str) -> Any:
    return conn.execute(select(t.meshes).where(t.meshes.c.id == mesh_id)).first()


def put_mesh(conn: Connection, values: Mapping[str, Any]) -> None:
    if mesh_by_id(conn, str(values["id"])) is None:
        conn.execute(insert(t.meshes).values(**values))
    else:
        changes = {k: v for k, v in values.items() if k not in ("id", "created_at")}
        conn.execute(update(t.meshes).where(t.meshes.c.id == values["id"]).values(**changes))


def cluster_row(conn: Connection, account_id: str, cluster_id: str) -> Any:
    return conn.execute(
        select(t.clusters).where(t.clusters.c.account_id == account_id, t.clusters.c.id == cluster_id)
    ).first()


def put_cluster(
    conn: Connection,
    *,
    account_id: str,
    cluster_id: str,
    name: str,
    state: Mapping[str, Any],
    faults: list[Any],
    now: datetime,
) -> None:
    if cluster_row(conn, account_id, cluster_id) is None:
        conn.execute(
            insert(t.clusters).values(
                account_id=account_id,
                id=cluster_id,
                name=name,
                state=dict(state),
                faults=faults,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        conn.execute(
            update(t.clusters)
            .where(t.clusters.c.account_id == account_id, t.clusters.c.id == cluster_id)
            .values(name=name, state=dict(state), faults=faults, updated_at=now)
        )


def meshes_using_cluster(conn: Connection, account_id: str) -> dict[str, str]:
    """cluster id -> mesh id, for every cluster that belongs to a mesh of the account."""
    out: dict[str, str] = {}
    live = (t.meshes.c.account_id == account_id) & t.meshes.c.deleted_at.is_(None)
    for row in conn.execute(select(t.meshes.c.id, t.meshes.c.clusters).where(live)):
        for cluster in row.clusters or []:
            out[str(cluster.get("clusterID"))] = str(row.id)
    return out


def mesh_for_update(conn: Connection, mesh_id: str) -> Any:
    query = select(t.meshes).where(t.meshes.c.id == mesh_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def set_mesh_state(
    conn: Connection, mesh_id: str, *, phase: str, now: datetime, reason: str = "", version: str | None = None
) -> None:
    values: dict[str, Any] = {"phase": phase, "reason": reason, "updated_at": now}
    if version is not None:
        values["version"] = version
    conn.execute(update(t.meshes).where(t.meshes.c.id == mesh_id).values(**values))


def cluster_documents(conn: Connection, account_id: str, cluster_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        select(t.clusters.c.id, t.clusters.c.state).where(
            t.clusters.c.account_id == account_id, t.clusters.c.id.in_(cluster_ids)
        )
    ).all()
    return {str(row.id): dict(row.state) for row in rows}


def update_cluster_state(
    conn: Connection, account_id: str, cluster_id: str, state: Mapping[str, Any], now: datetime
) -> None:
    conn.execute(
        update(t.clusters)
        .where(t.clusters.c.account_id == account_id, t.clusters.c.id == cluster_id)
        .values(state=dict(state), updated_at=now)
    )


def insert_mesh(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(insert(t.meshes).values(**values))


def update_mesh(conn: Connection, mesh_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(t.meshes).where(t.meshes.c.id == mesh_id).values(**values))
