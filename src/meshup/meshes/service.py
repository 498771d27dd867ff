"""Use cases of meshes: create (installs the control plane through the engine), list, show,
update the configuration, delete (uninstalls it); and the engine hook for their jobs.

Listing filters by permission: a caller who may list meshes at all (some policy allows
``asm:mesh:list``) sees exactly the meshes a policy allows that action on, evaluated per mesh with
its enterprise project and tags, like the console's enterprise-project filtering; a caller whom no
policy allows listing gets 403.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from meshup.audit.model import TraceContext
from meshup.clock import Clock
from meshup.drivers.base import ClusterDrivers
from meshup.errors import Conflict, Forbidden, InvalidRequest, NotFound, shown
from meshup.iam import actions
from meshup.iam.resources import mesh_facts
from meshup.iam.service import Caller, IdentityService
from meshup.jobs.model import JobNode, JobTree, Phase
from meshup.meshes import plans
from meshup.meshes.model import DEFAULT_ENTERPRISE_PROJECT, Mesh, MeshCreate, MeshPhase
from meshup.store.uow import Scheduler, UnitOfWork, UnitOfWorkFactory, retry_lost_race

if TYPE_CHECKING:
    from sqlalchemy import Connection


class MeshService:
    def __init__(
        self,
        identity: IdentityService,
        uow: UnitOfWorkFactory,
        drivers: ClusterDrivers,
        scheduler: Scheduler,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.uow = uow
        self.drivers = drivers
        self.scheduler = scheduler
        self.clock = clock

    # -- the API ---------------------------------------------------------------------------------

    def create(
        self, caller: Caller, project_id: str, command: MeshCreate, ip: str, trace: TraceContext | None = None
    ) -> Mesh:
        self.identity.precheck(caller, actions.CREATE, project_id)
        self.identity.authorize(
            caller,
            actions.CREATE,
            project_id,
            None,
            ip,
            request_tags=[(tag.key, tag.value) for tag in command.tags],
            enterprise_project_id=command.enterprise_project_id,
        )
        account_id = caller.principal.account.id
        return retry_lost_race(lambda: self._create(account_id, project_id, command, trace))

    def _create(
        self, account_id: str, project_id: str, command: MeshCreate, trace: TraceContext | None
    ) -> Mesh:
        now = self.clock.now()
        with self.uow() as uow:
            known = uow.enterprise_projects.ids(account_id) | {DEFAULT_ENTERPRISE_PROJECT}
            if command.enterprise_project_id not in known:
                raise InvalidRequest(
                    f"spec.extendParams.enterpriseProjectId: {shown(command.enterprise_project_id)} "
                    "is not an enterprise project of the account"
                )
            if uow.meshes.named(project_id, command.name) is not None:
                raise Conflict(f"a mesh named {command.name} already exists in this project")
            holders = uow.meshes.holders(account_id, command.cluster_ids)
            for cluster_id in command.cluster_ids:
                if cluster_id in holders:
                    raise Conflict(f"cluster {cluster_id} already belongs to mesh {holders[cluster_id]}")
            driver = self.drivers.for_account(account_id)
            for cluster_id in command.cluster_ids:
                driver.facts(cluster_id)  # a driver refuses a cluster it cannot reach or does not know
            mesh = Mesh(
                id=str(uuid.uuid4()),
                account_id=account_id,
                project_id=project_id,
                name=command.name,
                type=command.type,
                version=command.version,
                enterprise_project_id=command.enterprise_project_id,
                tags=command.tags,
                clusters=command.clusters,
                phase=MeshPhase.CREATING,
                reason="",
                created_at=now,
                updated_at=now,
                ipv6=command.ipv6,
                config=command.config,
                annotations=dict(command.annotations),
                labels=dict(command.labels),
            )
            tree = plans.plan_lifecycle(plans.CREATE, mesh.id, mesh.name, mesh.version, mesh.cluster_ids, now)
            mesh.job_id = tree.root_id
            uow.meshes.add(mesh)
            self._start(uow, mesh, tree, now)
            uow.traces.add_change(trace, now, resource_id=mesh.id, resource_name=mesh.name)
            uow.commit()
        return mesh

    def list_meshes(self, caller: Caller, project_id: str, ip: str) -> list[Mesh]:
        self.identity.precheck(caller, actions.LIST, project_id)
        with self.uow(read_only=True) as uow:
            meshes = uow.meshes.live(project_id)
        visible = []
        for mesh in meshes:
            try:
                self.identity.authorize(caller, actions.LIST, project_id, mesh_facts(mesh), ip)
            except Forbidden:
                continue
            visible.append(mesh)
        return visible

    def show(self, caller: Caller, project_id: str, mesh_id: str, ip: str) -> Mesh:
        self.identity.precheck(caller, actions.GET, project_id)
        with self.uow(read_only=True) as uow:
            return self._visible(uow, caller, project_id, mesh_id, actions.GET, ip)

    def update_config(
        self,
        caller: Caller,
        project_id: str,
        mesh_id: str,
        config: dict[str, Any],
        ip: str,
        trace: TraceContext | None = None,
    ) -> Mesh:
        self.identity.precheck(caller, actions.UPDATE, project_id)
        with self.uow() as uow:
            mesh = self._visible(uow, caller, project_id, mesh_id, actions.UPDATE, ip, lock=True)
            mesh.config = config
            mesh.updated_at = self.clock.now()
            uow.meshes.save(mesh)
            uow.traces.add_change(trace, mesh.updated_at, resource_id=mesh.id, resource_name=mesh.name)
            uow.commit()
        return mesh

    def delete(
        self, caller: Caller, project_id: str, mesh_id: str, ip: str, trace: TraceContext | None = None
    ) -> Mesh:
        self.identity.precheck(caller, actions.DELETE, project_id)
        now = self.clock.now()
        with self.uow() as uow:
            mesh = self._visible(uow, caller, project_id, mesh_id, actions.DELETE, ip, lock=True)
            task = uow.tasks.active_for_mesh(mesh.id)
            if task is not None:
                raise Conflict(
                    f"mesh {mesh.name} has an active upgrade task {task.id}; roll back or complete it first"
                )
            if mesh.phase.busy:
                raise Conflict(f"mesh {mesh.name} is {mesh.phase.value}; wait for its job to finish")
            driver = self.drivers.for_account(mesh.account_id)
            facts = {cluster_id: driver.facts(cluster_id) for cluster_id in mesh.cluster_ids}
            # Only clusters where the mesh left something behind need an uninstall (a mesh whose
            # creation failed early may have none, even on a cluster that is now unreachable).
            installed = [c for c in mesh.cluster_ids if plans.has_installation(facts[c], mesh.version)]
            mesh.phase, mesh.reason, mesh.updated_at = MeshPhase.DELETING, "", now
            if installed:
                tree = plans.plan_lifecycle(
                    plans.DELETE, mesh.id, mesh.name, mesh.version, installed, now, facts
                )
                mesh.job_id = tree.root_id
                uow.meshes.save(mesh)
                self._start(uow, mesh, tree, now)
                uow.traces.add_change(trace, now, resource_id=mesh.id, resource_name=mesh.name)
                uow.commit()
                return mesh
            answer = dataclasses.replace(mesh)  # what the caller sees: Deleting, then it is gone
            mesh.deleted_at = now
            uow.meshes.save(mesh)
            uow.traces.add_change(trace, now, resource_id=mesh.id, resource_name=mesh.name)
            uow.commit()
        return answer

    # -- helpers ---------------------------------------------------------------------------------

    def _visible(
        self,
        uow: UnitOfWork,
        caller: Caller,
        project_id: str,
        mesh_id: str,
        action: actions.Action,
        ip: str,
        *,
        lock: bool = False,
    ) -> Mesh:
        """The live mesh of the project, if the caller may act on it (404 hides the others)."""
        mesh = uow.meshes.get(mesh_id, lock=lock) if len(mesh_id) <= 64 and "\x00" not in mesh_id else None
        if mesh is None or mesh.project_id != project_id or not mesh.live:
            raise NotFound(f"mesh {shown(mesh_id)} not found")
        self.identity.authorize(caller, action, project_id, mesh_facts(mesh), ip)
        return mesh

    def _start(self, uow: UnitOfWork, mesh: Mesh, tree: JobTree, now: datetime) -> None:
        uow.jobs.add(tree, mesh_id=mesh.id, project_id=mesh.project_id)
        self.scheduler(uow, tree.root_id, now)

    # -- engine hook -----------------------------------------------------------------------------

    def on_lifecycle_finished(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        """A CreateMesh/DeleteMesh tree ended: move the mesh on, in the job's own transaction."""
        payload = payloads[root.id]
        success = root.phase is Phase.SUCCESS
        with self.uow.joining(conn) as uow:
            mesh = uow.meshes.get(str(payload.get("meshId", "")), lock=True)
            if mesh is None:
                return
            if payload.get("kind") == plans.CREATE:
                mesh.phase = MeshPhase.RUNNING if success else MeshPhase.CREATE_FAILED
                mesh.reason = "" if success else root.reason
            elif success:
                mesh.deleted_at = now  # gone for the API; its jobs stay queryable
            else:
                mesh.phase, mesh.reason = MeshPhase.DELETE_FAILED, root.reason
            mesh.updated_at = now
            uow.meshes.save(mesh)
            uow.commit()
