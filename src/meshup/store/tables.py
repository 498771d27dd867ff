"""SQLAlchemy Core tables: the only description of the schema (migrations mirror it).

Timestamps are stored as timezone-aware UTC where the database supports it; SQLite hands them back
naive and ``timefmt.as_utc`` restores the zone. JSON columns hold documents the domain owns
(policies, tags, cluster state) that are never queried by their inner fields.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)

# Counters that let every process notice a change made by another one (cache invalidation).
epochs = Table(
    "epochs",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    UniqueConstraint("account_id", "name", name="uq_projects_account_name"),
)

enterprise_projects = Table(
    "enterprise_projects",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("is_root", Boolean, nullable=False, default=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("password_hash", Text, nullable=True),
    # Bumped on every password change; tokens carry it, so old tokens stop working.
    Column("password_version", Integer, nullable=False, default=1),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_users_account_name"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    UniqueConstraint("account_id", "name", name="uq_groups_account_name"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(32), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("ak", String(128), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("sk_encrypted", LargeBinary, nullable=False),
    # Temporary keys: SHA-256 of the security token (the token itself is not needed to verify it).
    Column("security_token_sha256", String(64), nullable=True),
    Column("expires_at", TS, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    Index("ix_access_keys_user_id", "user_id"),
)

policies = Table(
    "policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("owner_kind", String(8), nullable=False),  # user | group
    Column("owner_id", String(32), nullable=False),
    Column("kind", String(8), nullable=False),  # identity | role
    Column("scope_kind", String(24), nullable=False),  # identity | account | project | enterprise_project
    Column("scope_value", String(64), nullable=True),
    Column("position", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Index("ix_policies_owner", "owner_kind", "owner_id"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_start", TS, nullable=False),
    Column("locked_until", TS, nullable=True),
)

clusters = Table(
    "clusters",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    # The simulated driver's view of the cluster (versions, nodes, namespaces, workloads, ...).
    Column("state", JSON, nullable=False),
    Column("faults", JSON, nullable=False, default=list),
    # The simulated driver's record of operations per job (idempotent requests; see drivers.simulated).
    Column("operations", JSON, nullable=False, default=dict),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

meshes = Table(
    "meshes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("version", String(32), nullable=False),
    Column("enterprise_project_id", String(64), nullable=False),
    Column("tags", JSON, nullable=False),  # [{"key": ..., "value": ...}] in wire order
    Column("clusters", JSON, nullable=False),  # [{"clusterID": ..., "installation": ..., ...}]
    Column("spec_extra", JSON, nullable=False),  # ipv6Enable, config, annotations, labels, ...
    Column("phase", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # Set when deletion finished: the mesh is gone for the API, its jobs stay queryable.
    Column("deleted_at", TS, nullable=True),
    Column("job_id", String(36), nullable=True),  # latest CreateMesh/DeleteMesh job
    Index(
        "uq_meshes_live_name",
        "project_id",
        "name",
        unique=True,
        postgresql_where=text("deleted_at IS NULL"),
        sqlite_where=text("deleted_at IS NULL"),
    ),
)

# Which live mesh holds a cluster: the primary key makes "one mesh per cluster" the database's rule,
# so two requests racing for one cluster cannot both win. Rows go when their mesh is deleted.
mesh_clusters = Table(
    "mesh_clusters",
    metadata,
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("cluster_id", String(64), primary_key=True),
    Column("mesh_id", String(36), ForeignKey("meshes.id", ondelete="CASCADE"), nullable=False),
    Index("ix_mesh_clusters_mesh_id", "mesh_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("root_id", String(36), nullable=False),
    Column("parent_id", String(36), nullable=True),
    Column("position", Integer, nullable=False),
    Column("type", String(48), nullable=False),
    Column("target", Text, nullable=False, default=""),
    Column("phase", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("started_at", TS, nullable=True),
    Column("completed_at", TS, nullable=True),
    Column("mesh_id", String(36), ForeignKey("meshes.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(32), nullable=False),
    # Engine bookkeeping (claims with leases, retries, step input and output).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", TS, nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    Column("run_after", TS, nullable=True),
    Column("payload", JSON, nullable=False, default=dict),
    Column("result", JSON, nullable=True),
    # True while a leaf may be claimed by a worker (queued, waiting, or leased and running).
    Column("runnable", Boolean, nullable=False, default=False),
    # Set when the reaper released an expired lease, cleared when the leaf starts again: the claim
    # in between is a reclaim (engine metrics).
    Column("lease_expired", Boolean, nullable=False, default=False),
    Index("ix_jobs_root_id", "root_id"),
    Index("ix_jobs_mesh_id", "mesh_id"),
    # Partial: only the handful of runnable leaves are indexed, however many jobs are stored.
    Index(
        "ix_jobs_runnable",
        "run_after",
        postgresql_where=text("runnable"),
        sqlite_where=text("runnable"),
    ),
)

upgrade_tasks = Table(
    "upgrade_tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("project_id", String(32), nullable=False),
    Column("mesh_id", String(36), ForeignKey("meshes.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("target_type", String(16), nullable=False),
    Column("source_version", String(32), nullable=False),
    Column("target_version", String(32), nullable=False),
    Column("current_step", JSON, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("step", String(24), nullable=True),
    Column("job_id", String(36), nullable=True),
    Column("message", Text, nullable=False, default=""),
    Column("namespaces", JSON, nullable=False),  # injected namespace names when the task was created
    Column("migrated", JSON, nullable=False),  # namespace names migrated so far
    Column("history", JSON, nullable=False),  # [{"step", "jobId", "phase"}] in order
    # NULL once the task is Completed or RolledBack; unique so a mesh has one active task at most.
    Column("active_mesh_id", String(36), nullable=True, unique=True),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_upgrade_tasks_mesh_id", "mesh_id"),
)

# One row per worker process (its heartbeat and cumulative engine counters, see engine.stats),
# plus one "retired" row holding the figures of every worker that has stopped.
worker_stats = Table(
    "worker_stats",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", TS, nullable=True),
    Column("heartbeat_at", TS, nullable=True),
    Column("stats", JSON, nullable=False),
)

# The audit trail (CTS traces). No foreign keys: a trace outlives what it names (a deleted mesh,
# user or account), and inserting one must never fail the change it records.
traces = Table(
    "traces",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(32), nullable=False),
    Column("project_id", String(32), nullable=True),  # NULL: account-wide (identity) events
    Column("time", BigInteger, nullable=False),  # ms since the epoch, when the call was answered
    Column("record_time", BigInteger, nullable=False),
    Column("service_type", String(16), nullable=False),
    Column("trace_name", String(64), nullable=False),
    Column("trace_type", String(16), nullable=False),
    Column("trace_rating", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("resource_name", String(64), nullable=False),
    Column("code", String(8), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("domain_id", String(64), nullable=False),
    Column("domain_name", String(64), nullable=False),
    Column("access_key_id", String(64), nullable=False),
    Column("message", String(512), nullable=False),
    Index("ix_traces_account_id", "account_id", "time"),
    Index("ix_traces_time", "time"),
)
