"""Apply a validated seed file to the database: one transaction, idempotent, keyed by names."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from meshup.drivers.simulated_documents import adopt_cluster_state, default_cluster_state
from meshup.errors import Conflict
from meshup.iam.identity import new_hex_id
from meshup.iam.passwords import hash_password, verify_password
from meshup.iam.secrets import MasterKey, MasterKeyError, hash_token
from meshup.jobs.model import JobNode, Phase, derive
from meshup.seed.schema import (
    SeedAccount,
    SeedCluster,
    SeedFile,
    SeedGroup,
    SeedJob,
    SeedMesh,
    SeedRolePolicy,
    SeedUser,
)
from meshup.store import accounts as account_store
from meshup.store import identity as identity_store
from meshup.store import jobs as job_store
from meshup.store import meshes as mesh_store

DEFAULT_ENTERPRISE_PROJECT = ("0", "default")
# Kept in a seeded cluster's document: what the seed declared, to leave it alone when unchanged.
SEED_FINGERPRINT = "seedFingerprint"


@dataclass(slots=True)
class ApplyReport:
    """What a seed created or updated, for the command line."""

    accounts: list[str] = field(default_factory=list)
    users: int = 0
    access_keys: int = 0
    clusters: int = 0
    meshes: int = 0
    jobs: int = 0


def apply_seed(conn: Connection, seed: SeedFile, master_key: MasterKey, now: datetime) -> ApplyReport:
    report = ApplyReport()
    for account in seed.accounts:
        _apply_account(conn, account, master_key, now, report)
    identity_store.bump_epoch(conn, identity_store.IAM_EPOCH)
    return report


def _apply_account(
    conn: Connection, account: SeedAccount, master_key: MasterKey, now: datetime, report: ApplyReport
) -> None:
    account_id = account_store.upsert_account(
        conn, name=account.name, account_id=account.id or new_hex_id(), enabled=account.enabled, now=now
    )
    report.accounts.append(account.name)
    projects: dict[str, str] = {}
    for project in account.projects:
        projects[project.name] = account_store.upsert_project(
            conn, account_id=account_id, name=project.name, project_id=project.id or new_hex_id()
        )
    for project_id, project_name in identity_store.account_projects(conn, account_id).items():
        projects.setdefault(project_name, project_id)
    account_store.upsert_enterprise_project(
        conn, account_id=account_id, ep_id=DEFAULT_ENTERPRISE_PROJECT[0], name=DEFAULT_ENTERPRISE_PROJECT[1]
    )
    for ep in account.enterprise_projects:
        account_store.upsert_enterprise_project(conn, account_id=account_id, ep_id=ep.id, name=ep.name)

    group_ids: dict[str, str] = {}
    for group in account.groups:
        group_ids[group.name] = account_store.upsert_group(
            conn, account_id=account_id, name=group.name, group_id=new_hex_id()
        )
        _set_policies(conn, account_id, "group", group_ids[group.name], group, projects)
    for user in account.users:
        _apply_user(conn, account_id, user, group_ids, projects, master_key, now)
        report.users += 1
        report.access_keys += len(user.access_keys)

    for cluster in account.clusters:
        _apply_cluster(conn, account_id, cluster, now)
        report.clusters += 1
    for mesh in account.meshes:
        report.jobs += _apply_mesh(conn, account_id, projects, mesh, now)
        report.meshes += 1


def _policy_rows(owner: SeedUser | SeedGroup, projects: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"kind": "identity", "scope_kind": "identity", "scope_value": None, "document": dict(document)}
        for document in owner.identity_policies
    ]
    for role in owner.role_policies:
        rows.append(
            {
                "kind": "role",
                "scope_kind": role.scope_kind,
                "scope_value": _scope_value(role, projects),
                "document": dict(role.policy),
            }
        )
    return rows


def _scope_value(role: SeedRolePolicy, projects: dict[str, str]) -> str | None:
    """Role grants on a project are stored by project id (the seed names the project)."""
    if role.scope_kind == "project" and role.scope_value is not None:
        return projects.get(role.scope_value, role.scope_value)
    return role.scope_value


def _set_policies(
    conn: Connection,
    account_id: str,
    owner_kind: str,
    owner_id: str,
    owner: SeedUser | SeedGroup,
    projects: dict[str, str],
) -> None:
    account_store.set_policies(
        conn,
        account_id=account_id,
        owner_kind=owner_kind,
        owner_id=owner_id,
        policies=_policy_rows(owner, projects),
    )


def _apply_user(
    conn: Connection,
    account_id: str,
    user: SeedUser,
    group_ids: dict[str, str],
    projects: dict[str, str],
    master_key: MasterKey,
    now: datetime,
) -> None:
    existing = account_store.user_row(conn, account_id, user.name)
    if existing is None:
        user_id = user.id or new_hex_id()
        account_store.insert_user(
            conn,
            {
                "id": user_id,
                "account_id": account_id,
                "name": user.name,
                "is_root": user.root,
                "enabled": user.enabled,
                "password_hash": hash_password(user.password) if user.password else None,
                "password_version": 1,
                "tags": dict(user.tags),
                "created_at": now,
            },
        )
    else:
        user_id = str(existing.id)
        changes: dict[str, Any] = {"is_root": user.root, "enabled": user.enabled, "tags": dict(user.tags)}
        if user.password is None:
            if existing.password_hash is not None:
                changes["password_hash"] = None
                changes["password_version"] = int(existing.password_version) + 1
        elif not verify_password(existing.password_hash, user.password):
            # A new password ends every token issued before it.
            changes["password_hash"] = hash_password(user.password)
            changes["password_version"] = int(existing.password_version) + 1
        account_store.update_user(conn, user_id, changes)
    account_store.set_memberships(conn, user_id, [group_ids[name] for name in user.groups])
    _set_policies(conn, account_id, "user", user_id, user, projects)
    for key in user.access_keys:
        row = account_store.access_key_row(conn, key.ak)
        if row is not None and str(row.user_id) != user_id:
            raise Conflict(f"access key {key.ak} already belongs to another user")
        sealed = master_key.encrypt_sk(key.ak, key.sk)
        if row is not None:
            try:
                if master_key.decrypt_sk(key.ak, bytes(row.sk_encrypted)) == key.sk:
                    sealed = bytes(row.sk_encrypted)  # unchanged: keep the stored ciphertext
            except MasterKeyError:
                pass
        account_store.put_access_key(
            conn,
            {
                "ak": key.ak,
                "user_id": user_id,
                "sk_encrypted": sealed,
                "security_token_sha256": hash_token(key.security_token) if key.security_token else None,
                "expires_at": key.expires_at,
                "enabled": key.enabled,
                "created_at": now,
            },
        )


def cluster_state(cluster: SeedCluster) -> dict[str, Any]:
    """The simulated driver's document of a cluster, as the seed declares it."""
    state: dict[str, Any] = {
        "kubernetesVersion": cluster.kubernetes_version,
        "status": cluster.status,
        "nodes": {
            "count": cluster.nodes.count,
            "cpu": cluster.nodes.cpu,
            "memory": cluster.nodes.memory,
            "masterLabelled": cluster.nodes.master_labelled,
        },
        "namespaces": [
            {
                "name": namespace.name,
                "labels": dict(namespace.labels),
                "workloads": [
                    {
                        "name": workload.name,
                        "replicas": workload.replicas,
                        "sidecarVersion": workload.sidecar_version,
                        **dict(workload.extra),
                    }
                    for workload in namespace.workloads
                ],
            }
            for namespace in cluster.namespaces
        ],
    }
    state.update(dict(cluster.extra))
    return state


def _fingerprint(state: Mapping[str, Any], faults: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([state, faults], sort_keys=True, default=str).encode()).hexdigest()


def _apply_cluster(conn: Connection, account_id: str, cluster: SeedCluster, now: datetime) -> None:
    """Write a declared cluster, unless the file declares it exactly as last time: then the
    cluster keeps the state upgrades gave it (re-applying a seed must not undo an upgrade)."""
    faults = [
        {
            "jobType": fault.job_type,
            "times": fault.times,
            "reason": fault.reason,
            "fired": 0,
            **dict(fault.extra),
        }
        for fault in cluster.faults
    ]
    state = cluster_state(cluster)
    fingerprint = _fingerprint(state, faults)
    existing = mesh_store.cluster_row(conn, account_id, cluster.id)
    if existing is not None and dict(existing.state).get(SEED_FINGERPRINT) == fingerprint:
        return
    state[SEED_FINGERPRINT] = fingerprint
    mesh_store.put_cluster(
        conn,
        account_id=account_id,
        cluster_id=cluster.id,
        name=cluster.name,
        state=state,
        faults=faults,
        now=now,
    )


def _apply_mesh(
    conn: Connection, account_id: str, projects: dict[str, str], mesh: SeedMesh, now: datetime
) -> int:
    project_id = projects[mesh.project]
    existing = mesh_store.mesh_by_name(conn, project_id, mesh.name)
    mesh_id = str(existing.id) if existing is not None else (mesh.id or str(uuid.uuid4()))
    if existing is not None and mesh.id is not None and mesh.id != mesh_id:
        raise Conflict(f"mesh {mesh.name} already exists with uid {mesh_id}, not {mesh.id}")
    owners = mesh_store.meshes_using_cluster(conn, account_id)
    for cluster_id in mesh.clusters:
        owner = owners.get(cluster_id)
        if owner is not None and owner != mesh_id:
            raise Conflict(f"cluster {cluster_id} already belongs to another mesh")
        row = mesh_store.cluster_row(conn, account_id, cluster_id)
        if row is None:
            mesh_store.put_cluster(
                conn,
                account_id=account_id,
                cluster_id=cluster_id,
                name=cluster_id,
                state=adopt_cluster_state(default_cluster_state(), mesh.version, now),
                faults=[],
                now=now,
            )
        elif existing is None or _needs_adoption(dict(row.state)):
            mesh_store.update_cluster_state(
                conn, account_id, cluster_id, adopt_cluster_state(dict(row.state), mesh.version, now), now
            )
    extra = dict(mesh.extra)
    mesh_store.put_mesh(
        conn,
        {
            "id": mesh_id,
            "account_id": account_id,
            "project_id": project_id,
            "name": mesh.name,
            "type": str(extra.pop("type", "InCluster")),
            "version": mesh.version,
            "enterprise_project_id": mesh.enterprise_project_id,
            "tags": [{"key": key, "value": value} for key, value in mesh.tags],
            "clusters": [{"clusterID": cluster_id} for cluster_id in mesh.clusters],
            "spec_extra": extra,
            "phase": mesh.phase,
            "reason": "",
            "created_at": existing.created_at if existing is not None else now,
            "updated_at": now,
        },
    )
    for job in mesh.jobs:
        nodes = fixture_tree(job, now)
        root_id = nodes[0].id
        previous_root = job_store.root_of(conn, root_id)
        if previous_root is not None:
            if previous_root != root_id:
                raise Conflict(f"job {root_id} already exists inside another job tree")
            job_store.delete_tree(conn, root_id)
        job_store.insert_nodes(
            conn,
            [job_store.NewJob(node, root_id, {"fixture": True}) for node in nodes],
            mesh_id=mesh_id,
            project_id=project_id,
        )
    return len(mesh.jobs)


def _needs_adoption(state: Mapping[str, Any]) -> bool:
    """A cluster document that has never had a control plane (freshly declared by a seed)."""
    return not (state.get("controlPlane") or {}).get("revisions")


def fixture_tree(job: SeedJob, now: datetime) -> list[JobNode]:
    """Nodes of a fixture job tree, root first, with consistent generated timestamps and derived parents."""
    nodes: list[JobNode] = []
    leaves = _count_leaves(job)
    base = now - timedelta(seconds=2 * leaves + 1)
    cursor = [0]

    def build(spec: SeedJob, parent_id: str | None, position: int) -> JobNode:
        node_id = spec.uid or str(uuid.uuid4())
        created = spec.creation_timestamp or base
        node = JobNode(
            id=node_id,
            parent_id=parent_id,
            position=position,
            type=spec.type,
            target=spec.target,
            phase=Phase(spec.phase or "Initializing"),
            reason=spec.reason,
            created_at=created,
            updated_at=created,
            started_at=None,
            completed_at=None,
        )
        nodes.append(node)
        if spec.subjobs:
            node.children = [build(child, node_id, index) for index, child in enumerate(spec.subjobs)]
            derived = derive(node.children, created)
            node.phase, node.reason = derived.phase, derived.reason or spec.reason
            node.started_at = spec.start_time or derived.started_at
            node.completed_at = spec.completion_time or derived.completed_at
            node.updated_at = max(derived.updated_at, node.completed_at or created)
            return node
        step = cursor[0]
        cursor[0] += 1
        if node.phase is not Phase.INITIALIZING:
            node.started_at = spec.start_time or max(created, base + timedelta(seconds=2 * step))
        if node.phase.terminal:
            assert node.started_at is not None
            node.completed_at = spec.completion_time or node.started_at + timedelta(seconds=1)
        node.updated_at = max(created, node.completed_at or node.started_at or created)
        return node

    build(job, None, 0)
    return nodes


def _count_leaves(job: SeedJob) -> int:
    return 1 if not job.subjobs else sum(_count_leaves(child) for child in job.subjobs)
