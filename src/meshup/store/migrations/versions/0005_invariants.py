"""invariants the database enforces: one live mesh per cluster (mesh_clusters), backfilled

Revision ID: 0005_invariants
Revises: 0004_cluster_operations
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_invariants"
down_revision = "0004_cluster_operations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "mesh_clusters",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("cluster_id", sa.String(length=64), nullable=False),
        sa.Column("mesh_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_mesh_clusters_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mesh_id"], ["meshes.id"], name="fk_mesh_clusters_mesh_id_meshes", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "cluster_id", name="pk_mesh_clusters"),
    )
    op.create_index("ix_mesh_clusters_mesh_id", "mesh_clusters", ["mesh_id"])
    _backfill(table)


def _backfill(table: sa.Table) -> None:
    """One row per cluster of every live mesh. Where earlier races left a cluster in several live
    meshes, the oldest mesh keeps it (the others still show it, but no longer hold it)."""
    meshes = sa.table(
        "meshes",
        sa.column("id", sa.String),
        sa.column("account_id", sa.String),
        sa.column("clusters", sa.JSON),
        sa.column("created_at", sa.DateTime),
        sa.column("deleted_at", sa.DateTime),
    )
    bind = op.get_bind()
    live = bind.execute(
        sa.select(meshes.c.id, meshes.c.account_id, meshes.c.clusters)
        .where(meshes.c.deleted_at.is_(None))
        .order_by(meshes.c.created_at, meshes.c.id)
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for mesh in live:
        for cluster in mesh.clusters or []:
            cluster_id = str(cluster.get("clusterID", "")) if isinstance(cluster, dict) else ""
            key = (str(mesh.account_id), cluster_id)
            if cluster_id and key not in rows:
                rows[key] = {"account_id": key[0], "cluster_id": cluster_id, "mesh_id": str(mesh.id)}
    if rows:
        op.bulk_insert(table, list(rows.values()))


def downgrade() -> None:
    op.drop_index("ix_mesh_clusters_mesh_id", table_name="mesh_clusters")
    op.drop_table("mesh_clusters")
