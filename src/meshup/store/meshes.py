"""Meshes (and which mesh holds each cluster), and the simulated clusters' documents.

``MeshRepository`` takes and returns :class:`meshup.meshes.model.Mesh`; the functions below it are
the seed applier's upserts. Both keep ``mesh_clusters`` in step with the live meshes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from meshup.meshes.model import Mesh, MeshCluster, MeshPhase, Tag
from meshup.store import tables as t
from meshup.timefmt import as_utc

m = t.meshes
mc = t.mesh_clusters


class MeshRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, mesh_id: str, *, lock: bool = False) -> Mesh | None:
        """The mesh, deleted or not; ``lock`` holds its row until the transaction ends."""
        query = select(m).where(m.c.id == mesh_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _mesh(row)

    def live(self, project_id: str) -> list[Mesh]:
        rows = self.conn.execute(
            select(m)
            .where(m.c.project_id == project_id, m.c.deleted_at.is_(None))
            .order_by(m.c.created_at, m.c.name)
        )
        return [_mesh(row) for row in rows]

    def named(self, project_id: str, name: str) -> Mesh | None:
        """The live mesh of that name (deleted meshes free their names)."""
        row = self.conn.execute(
            select(m).where(m.c.project_id == project_id, m.c.name == name, m.c.deleted_at.is_(None))
        ).first()
        return None if row is None else _mesh(row)

    def holders(self, account_id: str, cluster_ids: Iterable[str]) -> dict[str, str]:
        """cluster id -> id of the live mesh that holds it, for those of ``cluster_ids`` that are held."""
        rows = self.conn.execute(
            select(mc.c.cluster_id, mc.c.mesh_id).where(
                mc.c.account_id == account_id, mc.c.cluster_id.in_(list(cluster_ids))
            )
        )
        return {str(row.cluster_id): str(row.mesh_id) for row in rows}

    def add(self, mesh: Mesh) -> None:
        """Insert a new mesh holding its clusters; a lost race for a name or a cluster raises
        IntegrityError (the unit of work turns it into ``Collision``)."""
        self.conn.execute(insert(m).values(id=mesh.id, created_at=mesh.created_at, **_columns(mesh)))
        _hold(self.conn, mesh.account_id, mesh.id, mesh.cluster_ids)

    def save(self, mesh: Mesh) -> None:
        """Write what may change; a deleted mesh lets go of its clusters."""
        self.conn.execute(update(m).where(m.c.id == mesh.id).values(**_columns(mesh)))
        if not mesh.live:
            self.conn.execute(delete(mc).where(mc.c.mesh_id == mesh.id))


def _columns(mesh: Mesh) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "ipv6Enable": mesh.ipv6,
        "annotations": dict(mesh.annotations),
        "labels": dict(mesh.labels),
    }
    if mesh.config is not None:
        extra["config"] = mesh.config
    return {
        "account_id": mesh.account_id,
        "project_id": mesh.project_id,
        "name": mesh.name,
        "type": mesh.type,
        "version": mesh.version,
        "enterprise_project_id": mesh.enterprise_project_id,
        "tags": [{"key": tag.key, "value": tag.value} for tag in mesh.tags],
        "clusters": [{"clusterID": c.cluster_id, **c.details} for c in mesh.clusters],
        "spec_extra": extra,
        "phase": mesh.phase.value,
        "reason": mesh.reason,
        "updated_at": mesh.updated_at,
        "deleted_at": mesh.deleted_at,
        "job_id": mesh.job_id,
    }


def _mesh(row: Row[Any]) -> Mesh:
    extra = dict(row.spec_extra or {})
    clusters = tuple(
        MeshCluster(str(c.get("clusterID")), {k: v for k, v in c.items() if k != "clusterID"})
        for c in row.clusters or []
    )
    return Mesh(
        id=str(row.id),
        account_id=str(row.account_id),
        project_id=str(row.project_id),
        name=str(row.name),
        type=str(row.type),
        version=str(row.version),
        enterprise_project_id=str(row.enterprise_project_id),
        tags=tags_of(row.tags),
        clusters=clusters,
        phase=MeshPhase(row.phase),
        reason=row.reason or "",
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        ipv6=bool(extra.get("ipv6Enable", False)),
        config=extra.get("config"),
        annotations={str(k): str(v) for k, v in (extra.get("annotations") or {}).items()},
        labels={str(k): str(v) for k, v in (extra.get("labels") or {}).items()},
        job_id=row.job_id,
        deleted_at=as_utc(row.deleted_at) if row.deleted_at else None,
    )


def tags_of(stored: Any) -> tuple[Tag, ...]:
    """A mesh's tags from their stored form (``[{"key", "value"}]`` in wire order)."""
    return tuple(Tag(str(tag["key"]), str(tag.get("value") or "")) for tag in stored or [])


def _hold(conn: Connection, account_id: str, mesh_id: str, cluster_ids: Iterable[str]) -> None:
    rows = [{"account_id": account_id, "cluster_id": c, "mesh_id": mesh_id} for c in cluster_ids]
    if rows:
        conn.execute(insert(mc), rows)


# --- seed upserts ---------------------------------------------------------------------------------


def mesh_by_name(conn: Connection, project_id: str, name: str) -> Any:
    """The live mesh row of that name (deleted meshes free their names)."""
    return conn.execute(
        select(m).where(m.c.project_id == project_id, m.c.name == name, m.c.deleted_at.is_(None))
    ).first()


def meshes_using_cluster(conn: Connection, account_id: str) -> dict[str, str]:
    """cluster id -> mesh id, for every cluster that a live mesh of the account holds."""
    rows = conn.execute(select(mc.c.cluster_id, mc.c.mesh_id).where(mc.c.account_id == account_id))
    return {str(row.cluster_id): str(row.mesh_id) for row in rows}


def put_mesh(conn: Connection, values: Mapping[str, Any]) -> None:
    """Insert or update a mesh row; the mesh holds exactly the clusters it lists."""
    mesh_id = str(values["id"])
    if conn.execute(select(m.c.id).where(m.c.id == mesh_id)).first() is None:
        conn.execute(insert(m).values(**values))
    else:
        changes = {k: v for k, v in values.items() if k not in ("id", "created_at")}
        conn.execute(update(m).where(m.c.id == mesh_id).values(**changes))
    conn.execute(delete(mc).where(mc.c.mesh_id == mesh_id))
    if values.get("deleted_at") is None:
        cluster_ids = [str(c.get("clusterID")) for c in values.get("clusters") or []]
        _hold(conn, str(values["account_id"]), mesh_id, cluster_ids)


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


def update_cluster_state(
    conn: Connection, account_id: str, cluster_id: str, state: Mapping[str, Any], now: datetime
) -> None:
    conn.execute(
        update(t.clusters)
        .where(t.clusters.c.account_id == account_id, t.clusters.c.id == cluster_id)
        .values(state=dict(state), updated_at=now)
    )
