"""worker heartbeats with cumulative engine counters (worker_stats); jobs.lease_expired

Revision ID: 0006_worker_stats
Revises: 0005_invariants
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_worker_stats"
down_revision = "0005_invariants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_stats",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_worker_stats"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_expired", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expired")
    op.drop_table("worker_stats")
