"""Use cases of meshes: create (installs the control plane through the engine), list, show,
update the configuration, delete (uninstalls it); and the engine hook for their jobs.

Listing filters by permission: a caller who may list meshes at all (some policy allows
``asm:mesh:list``) sees exactly the meshes a policy allows that action on, evaluated per mesh with
its enterprise project and tags, like the console's enterprise-project filtering; a caller whom no
policy allows listing gets 403.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from meshup.drivers.base import ClusterDrivers, ClusterFacts
from meshup.errors import Conflict, Forbidden, InvalidRequest, NotFound
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService
from meshup.jobs.model import JobNode, Phase
from meshup.jobs.service import shown
from meshup.meshes import plans
from meshup.meshes.schemas import parse_create, parse_update, render_mesh
from meshup.store import accounts as account_store
from meshup.store import jobs as job_store
from meshup.store import meshes as mesh_store
from meshup.store import upgrades as task_store
from meshup.upgrades.service import mesh_facts

# Phases in which a job of the mesh is running: no delete then.
BUSY = frozenset({"Creating", "Deleting", "Upgrading", "RollingBack"})


class MeshService:
    def __init__(self, identity: IdentityService, schedule: Any, *, drivers: ClusterDrivers) -> None:
        self.identity = identity
        self.schedule = schedule
        self.drivers = drivers

    def _visible(
        self, conn: Connection, caller: Caller, project_id: str, mesh_id: str, action: actions.Action, ip: str
    ) -> Any:
        self.identity.precheck(caller, action, project_id)
        mesh = (
            mesh_store.mesh_for_update(conn, mesh_id)
            if len(mesh_id) <= 64 and "\x00" not in mesh_id
            else None
        )
        if mesh is None or mesh.project_id != project_id or mesh.deleted_at is not None:
            raise NotFound(f"mesh {shown(mesh_id)} not found")
        self.identity.authorize(caller, action, project_id, mesh_facts(mesh), ip)
        return mesh

    def create(
        self, conn: Connection, caller: Caller, project_id: str, body: Any, ip: str, now: datetime
    ) -> dict[str, Any]:
        self.identity.precheck(caller, actions.CREATE, project_id)
        request = parse_create(body)
        self.identity.authorize(
            caller,
            actions.CREATE,
            project_id,
            None,
            ip,
            request_tags=request.tags,
            enterprise_project_id=request.enterprise_project_id,
        )
        account_id = caller.principal.account.id
        if request.enterprise_project_id not in account_store.enterprise_project_ids(conn, account_id) | {
            "0"
        }:
            raise InvalidRequest(
                f"spec.extendParams.enterpriseProjectId: {shown(request.enterprise_project_id)} is not an enterprise project of the account"
            )
        if mesh_store.mesh_by_name(conn, project_id, request.name) is not None:
            raise Conflict(f"a mesh named {request.name} already exists in this project")
        owners = mesh_store.meshes_using_cluster(conn, account_id)
        for cluster in request.clusters:
            owner = owners.get(cluster["clusterID"])
            if owner is not None:
                raise Conflict(f"cluster {cluster['clusterID']} already belongs to mesh {owner}")
        mesh_id = str(uuid.uuid4())
        cluster_ids = [cluster["clusterID"] for cluster in request.clusters]
        mesh_store.insert_mesh(
            conn,
            {
                "id": mesh_id,
                "account_id": account_id,
                "project_id": project_id,
                "name": request.name,
                "type": request.type,
                "version": request.version,
                "enterprise_project_id": request.enterprise_project_id,
                "tags": [{"key": key, "value": value} for key, value in request.tags],
                "clusters": list(request.clusters),
                "spec_extra": request.extra,
                "phase": "Creating",
                "reason": "",
                "created_at": now,
                "updated_at": now,
            },
        )
        self._start(conn, plans.CREATE, mesh_id, request.name, request.version, cluster_ids, project_id, now)
        return render_mesh(mesh_store.mesh_by_id(conn, mesh_id))

    def list_meshes(self, conn: Connection, caller: Caller, project_id: str, ip: str) -> dict[str, Any]:
        self.identity.precheck(caller, actions.LIST, project_id)
        items = []
        for mesh in mesh_store.live_meshes(conn, project_id):
            try:
                self.identity.authorize(caller, actions.LIST, project_id, mesh_facts(mesh), ip)
            except Forbidden:
                continue
            items.append(render_mesh(mesh))
        return {"apiVersion": "v1", "kind": "MeshList", "items": items}

    def show(
        self, conn: Connection, caller: Caller, project_id: str, mesh_id: str, ip: str
    ) -> dict[str, Any]:
        return render_mesh(self._visible(conn, caller, project_id, mesh_id, actions.GET, ip))

    def update(
        self,
        conn: Connection,
        caller: Caller,
        project_id: str,
        mesh_id: str,
        body: Any,
        ip: str,
        now: datetime,
    ) -> dict[str, Any]:
        mesh = self._visible(conn, caller, project_id, mesh_id, actions.UPDATE, ip)
        config = parse_update(body)
        extra = {**dict(mesh.spec_extra or {}), "config": config}
        mesh_store.update_mesh(conn, mesh.id, {"spec_extra": extra, "updated_at": now})
        return render_mesh(mesh_store.mesh_by_id(conn, mesh.id))

    def delete(
        self, conn: Connection, caller: Caller, project_id: str, mesh_id: str, ip: str, now: datetime
    ) -> dict[str, Any]:
        mesh = self._visible(conn, caller, project_id, mesh_id, actions.DELETE, ip)
        task = task_store.active_task_for_mesh(conn, mesh.id)
        if task is not None:
            raise Conflict(
                f"mesh {mesh.name} has an active upgrade task {task.id}; roll back or complete it first"
            )
        if mesh.phase in BUSY:
            raise Conflict(f"mesh {mesh.name} is {mesh.phase}; wait for its job to finish")
        cluster_ids = [str(c.get("clusterID")) for c in (mesh.clusters or [])]
        driver = self.drivers.for_account(mesh.account_id)
        facts = {cluster_id: driver.facts(cluster_id) for cluster_id in cluster_ids}
        # Only clusters where the mesh left something behind need an uninstall (a mesh whose
        # creation failed early may have none, even on a cluster that is now unreachable).
        installed = [c for c in cluster_ids if plans.has_installation(facts[c], mesh.version)]
        mesh_store.set_mesh_state(conn, mesh.id, phase="Deleting", now=now)
        if installed:
            self._start(
                conn, plans.DELETE, mesh.id, mesh.name, mesh.version, installed, project_id, now, facts
            )
            return render_mesh(mesh_store.mesh_by_id(conn, mesh.id))
        document = render_mesh(mesh_store.mesh_by_id(conn, mesh.id))
        mesh_store.update_mesh(conn, mesh.id, {"deleted_at": now, "updated_at": now})
        return document

    def _start(
        self,
        conn: Connection,
        kind: str,
        mesh_id: str,
        name: str,
        version: str,
        clusters: list[str],
        project_id: str,
        now: datetime,
        facts: Mapping[str, ClusterFacts] | None = None,
    ) -> None:
        jobs = plans.plan_lifecycle(kind, mesh_id, name, version, clusters, now, facts)
        job_store.insert_nodes(conn, jobs, mesh_id=mesh_id, project_id=project_id)
        self.schedule(conn, jobs[0].node.id, now)
        mesh_store.update_mesh(conn, mesh_id, {"job_id": jobs[0].node.id})

    def on_lifecycle_finished(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        payload = payloads[root.id]
        mesh_id = str(payload.get("meshId", ""))
        success = root.phase is Phase.SUCCESS
        if payload.get("kind") == plans.CREATE:
            phase = "Running" if success else "CreateFailed"
            mesh_store.set_mesh_state(
                conn, mesh_id, phase=phase, now=now, reason="" if success else root.reason
            )
        elif success:
            mesh_store.update_mesh(conn, mesh_id, {"phase": "Deleting", "deleted_at": now, "updated_at": now})
        else:
            mesh_store.set_mesh_state(conn, mesh_id, phase="DeleteFailed", now=now, reason=root.reason)
