"""the audit trail: traces in the shape of the Cloud Trace Service

Revision ID: 0007_traces
Revises: 0006_worker_stats
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_traces"
down_revision = "0006_worker_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("record_time", sa.BigInteger(), nullable=False),
        sa.Column("service_type", sa.String(length=16), nullable=False),
        sa.Column("trace_name", sa.String(length=64), nullable=False),
        sa.Column("trace_type", sa.String(length=16), nullable=False),
        sa.Column("trace_rating", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("resource_name", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.String(length=64), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("access_key_id", sa.String(length=64), nullable=False),
        sa.Column("message", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_traces"),
    )
    op.create_index("ix_traces_account_id", "traces", ["account_id", "time"])
    op.create_index("ix_traces_time", "traces", ["time"])


def downgrade() -> None:
    op.drop_index("ix_traces_time", table_name="traces")
    op.drop_index("ix_traces_account_id", table_name="traces")
    op.drop_table("traces")
