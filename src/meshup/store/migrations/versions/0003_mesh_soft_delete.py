"""mesh soft delete and lifecycle job: deleted meshes keep their jobs; names are unique among live meshes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meshes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.String(length=36), nullable=True))
        batch_op.drop_constraint("uq_meshes_project_name", type_="unique")
        batch_op.create_index(
            "uq_meshes_live_name",
            ["project_id", "name"],
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("meshes", schema=None) as batch_op:
        batch_op.drop_index("uq_meshes_live_name")
        batch_op.create_unique_constraint("uq_meshes_project_name", ["project_id", "name"])
        batch_op.drop_column("job_id")
        batch_op.drop_column("deleted_at")
