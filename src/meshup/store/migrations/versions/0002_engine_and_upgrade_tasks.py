"""engine and upgrade tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:29:14.997898
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "upgrade_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("mesh_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=16), nullable=False),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("source_version", sa.String(length=32), nullable=False),
        sa.Column("target_version", sa.String(length=32), nullable=False),
        sa.Column("current_step", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("step", sa.String(length=24), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("namespaces", sa.JSON(), nullable=False),
        sa.Column("migrated", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("active_mesh_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_upgrade_tasks_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mesh_id"], ["meshes.id"], name=op.f("fk_upgrade_tasks_mesh_id_meshes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upgrade_tasks")),
        sa.UniqueConstraint("active_mesh_id", name=op.f("uq_upgrade_tasks_active_mesh_id")),
    )
    with op.batch_alter_table("upgrade_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_upgrade_tasks_mesh_id", ["mesh_id"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runnable", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(
            "ix_jobs_runnable",
            ["run_after"],
            unique=False,
            postgresql_where=sa.text("runnable"),
            sqlite_where=sa.text("runnable"),
        )


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_jobs_runnable", postgresql_where=sa.text("runnable"), sqlite_where=sa.text("runnable")
        )
        batch_op.drop_column("runnable")

    with op.batch_alter_table("upgrade_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_upgrade_tasks_mesh_id")

    op.drop_table("upgrade_tasks")
