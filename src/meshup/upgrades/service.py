"""Use cases of canary upgrade tasks: create, read, start the next step, delete; and the engine
hook that moves a task (and its mesh) on when a step's job ends."""

from __future__ import annotations

import re
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
from meshup.injection import injected_namespaces
from meshup.jobs.model import JobNode, Phase
from meshup.meshes.model import Mesh, MeshPhase
from meshup.meshes.versions import catalogue
from meshup.store.uow import Scheduler, UnitOfWork, UnitOfWorkFactory, retry_lost_race
from meshup.upgrades import model
from meshup.upgrades.model import (
    MUTATING,
    Step,
    TaskPage,
    TaskPhase,
    TaskQuery,
    TaskState,
    UpgradeChange,
    UpgradeCreate,
    UpgradeTask,
)
from meshup.upgrades.plans import PlanContext, migrated_by, plan_step

if TYPE_CHECKING:
    from sqlalchemy import Connection

OWNER = "upgradeTask"
# Anything else cannot be a stored task id (and a NUL would make PostgreSQL refuse the query).
_TASK_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class UpgradeService:
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
        self.scheduler = scheduler  # makes a new tree's first leaves runnable
        self.clock = clock

    # -- the API ---------------------------------------------------------------------------------

    def get(self, caller: Caller, project_id: str, task_id: str, ip: str) -> UpgradeTask:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        with self.uow(read_only=True) as uow:
            task, _ = self._visible(uow, caller, project_id, task_id, ip)
        return task

    def list_tasks(self, caller: Caller, project_id: str, query: TaskQuery, ip: str) -> TaskPage:
        """The tasks the caller may see, newest first: like the mesh list, each task is shown when
        a policy allows ``asm:mesh:upgrade`` on its mesh. A ``meshId`` filter names a mesh the
        caller must be allowed to upgrade (404 unknown, 403 denied, as GET of that mesh would)."""
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        with self.uow(read_only=True) as uow:
            if query.mesh_id is not None:
                mesh = uow.meshes.get(query.mesh_id) if _TASK_ID.fullmatch(query.mesh_id) else None
                if mesh is None or mesh.project_id != project_id or not mesh.live:
                    raise NotFound(f"mesh {shown(query.mesh_id)} not found")
                self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
            tasks = uow.tasks.listed(project_id, query.mesh_id)
            meshes: dict[str, Mesh | None] = {}
            for task in tasks:
                if task.mesh_id not in meshes:
                    meshes[task.mesh_id] = uow.meshes.get(task.mesh_id)
        visible: list[UpgradeTask] = []
        allowed: dict[str, bool] = {}
        for task in tasks:
            mesh = meshes[task.mesh_id]
            if mesh is None:
                continue
            if mesh.id not in allowed:
                try:
                    self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
                    allowed[mesh.id] = True
                except Forbidden:
                    allowed[mesh.id] = False
            if allowed[mesh.id]:
                visible.append(task)
        start = 0
        if query.marker is not None:
            index = next((i for i, task in enumerate(visible) if task.id == query.marker), None)
            if index is None:
                raise InvalidRequest(f"marker: {shown(query.marker)} is not a task of this list")
            start = index + 1
        page = visible[start : start + query.limit]
        more = start + query.limit < len(visible)
        return TaskPage(tuple(page), page[-1].id if more and page else None)

    def create(
        self,
        caller: Caller,
        project_id: str,
        command: UpgradeCreate,
        ip: str,
        trace: TraceContext | None = None,
    ) -> UpgradeTask:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        return retry_lost_race(lambda: self._create(caller, project_id, command, ip, trace))

    def _create(
        self, caller: Caller, project_id: str, command: UpgradeCreate, ip: str, trace: TraceContext | None
    ) -> UpgradeTask:
        now = self.clock.now()
        with self.uow() as uow:
            mesh = uow.meshes.get(command.mesh_id, lock=True)  # one create at a time per mesh
            if mesh is None or mesh.project_id != project_id or not mesh.live:
                raise NotFound(f"mesh {shown(command.mesh_id)} not found")
            self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
            if mesh.phase is not MeshPhase.RUNNING:
                raise Conflict(
                    f"mesh {mesh.name} is {mesh.phase.value}; an upgrade task can start only while it is Running"
                )
            active = uow.tasks.active_for_mesh(mesh.id)
            if active is not None:
                raise Conflict(
                    f"mesh {mesh.name} already has an active upgrade task {active.id} ({active.phase.value})"
                )
            refusal = catalogue().upgrade_refusal(mesh.version, command.target_version)
            if refusal is not None:
                raise InvalidRequest(f"spec.targetVersion: {refusal}")
            step = command.current_step.step
            if step is not Step.PRECHECK:
                raise Conflict(f"{step.value} is not allowed now; a new task starts with PreCheck")
            task_id = str(uuid.uuid4())
            context = self._plan_context(mesh, mesh.version, command.target_version, task_id, now)
            state = TaskState(TaskPhase.WAITING, injected_namespaces(context.clusters, mesh.version))
            model.check_start(state, Step.PRECHECK, command.current_step.namespaces)
            root_id = self._start(uow, mesh, context, Step.PRECHECK, (), now)
            task = UpgradeTask(
                id=task_id,
                account_id=mesh.account_id,
                project_id=project_id,
                mesh_id=mesh.id,
                name=command.name,
                strategy=command.strategy.value,
                target_type=command.target_type.value,
                source_version=mesh.version,
                target_version=command.target_version,
                state=model.started(state, Step.PRECHECK, root_id),
                step=Step.PRECHECK,
                step_namespaces=(),
                job_id=root_id,
                message="",
                created_at=now,
                updated_at=now,
            )
            uow.tasks.add(task)  # a second active task of the mesh breaks a unique key: Collision
            uow.traces.add_change(trace, now, resource_id=task.id, resource_name=task.name)
            uow.commit()
        return task

    def update(
        self,
        caller: Caller,
        project_id: str,
        task_id: str,
        change: UpgradeChange,
        ip: str,
        trace: TraceContext | None = None,
    ) -> UpgradeTask:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        return retry_lost_race(lambda: self._update(caller, project_id, task_id, change, ip, trace))

    def _update(
        self,
        caller: Caller,
        project_id: str,
        task_id: str,
        change: UpgradeChange,
        ip: str,
        trace: TraceContext | None,
    ) -> UpgradeTask:
        now = self.clock.now()
        with self.uow() as uow:
            task, mesh = self._visible(uow, caller, project_id, task_id, ip, lock=True)
            model.check_immutable(change, task)
            if change.current_step is None:
                raise InvalidRequest("spec.currentStep: required")
            step = change.current_step.step
            namespaces = model.check_start(task.state, step, change.current_step.namespaces)
            context = self._plan_context(mesh, task.source_version, task.target_version, task.id, now)
            root_id = self._start(uow, mesh, context, step, namespaces, now)
            seen_job = task.job_id or ""
            task.state = model.started(task.state, step, root_id)
            task.step, task.step_namespaces = step, namespaces if step is Step.DATA_PLANE else ()
            task.job_id, task.message, task.updated_at = root_id, "", now
            uow.tasks.save(task, started_after=seen_job)  # of two racing PUTs only one starts a step
            if step in MUTATING or step is Step.ROLLBACK:
                mesh.phase = MeshPhase.UPGRADING if step in MUTATING else MeshPhase.ROLLING_BACK
                mesh.reason, mesh.updated_at = "", now
                uow.meshes.save(mesh)
            uow.traces.add_change(trace, now, resource_id=task.id, resource_name=task.name)
            uow.commit()
        return task

    def delete(
        self, caller: Caller, project_id: str, task_id: str, ip: str, trace: TraceContext | None = None
    ) -> UpgradeTask:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        with self.uow() as uow:
            task, _ = self._visible(uow, caller, project_id, task_id, ip, lock=True)
            step = task.step.value if task.step else "nothing"
            if task.phase is TaskPhase.RUNNING:
                raise Conflict(
                    f"{step} of upgrade task {task.id} is still running; wait for its job to finish"
                )
            if not task.state.deletable:
                raise Conflict(
                    f"upgrade task {task.id} is {task.phase.value} after {step}; roll back or complete first "
                    "(a task can be deleted when Completed, RolledBack, or when it has run only pre-checks)"
                )
            uow.tasks.delete(task.id)
            uow.traces.add_change(trace, self.clock.now(), resource_id=task.id, resource_name=task.name)
            uow.commit()
        return task

    # -- helpers ---------------------------------------------------------------------------------

    def _visible(
        self, uow: UnitOfWork, caller: Caller, project_id: str, task_id: str, ip: str, *, lock: bool = False
    ) -> tuple[UpgradeTask, Mesh]:
        task = uow.tasks.get(task_id, lock=lock) if _TASK_ID.fullmatch(task_id) else None
        mesh = uow.meshes.get(task.mesh_id, lock=lock) if task is not None else None
        if task is None or mesh is None or task.project_id != project_id:
            raise NotFound(f"mesh upgrade task {shown(task_id)} not found")
        self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
        return task, mesh

    def _plan_context(
        self, mesh: Mesh, source_version: str, target_version: str, task_id: str, now: datetime
    ) -> PlanContext:
        driver = self.drivers.for_account(mesh.account_id)
        return PlanContext(
            mesh_id=mesh.id,
            mesh_name=mesh.name,
            source_version=source_version,
            target_version=target_version,
            clusters=[driver.facts(cluster_id) for cluster_id in mesh.cluster_ids],
            now=now,
            owner={"owner": OWNER, "taskId": task_id},
        )

    def _start(
        self,
        uow: UnitOfWork,
        mesh: Mesh,
        context: PlanContext,
        step: Step,
        namespaces: tuple[str, ...],
        now: datetime,
    ) -> str:
        tree = plan_step(step, context, namespaces)
        uow.jobs.add(tree, mesh_id=mesh.id, project_id=mesh.project_id)
        self.scheduler(uow, tree.root_id, now)
        return tree.root_id

    # -- engine hook -----------------------------------------------------------------------------

    def on_step_finished(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        """A step's root job ended: move the task and the mesh on, in the job's own transaction."""
        task_id = str(payloads[root.id].get("taskId", ""))
        success = root.phase is Phase.SUCCESS
        with self.uow.joining(conn) as uow:
            task = uow.tasks.get(task_id, lock=True)
            if task is None or task.job_id != root.id or task.step is None:
                return  # the task was deleted, or this is not its latest step
            step = task.step
            migrated_now = migrated_by(root, payloads) if step is Step.DATA_PLANE else []
            task.state = model.finished(task.state, root.id, success, migrated_now)
            task.message, task.updated_at = ("" if success else root.reason), now
            uow.tasks.save(task)
            mesh = uow.meshes.get(task.mesh_id, lock=True)
            if mesh is not None and (step in MUTATING or step is Step.ROLLBACK):
                if success:
                    mesh.phase, mesh.reason = MeshPhase.RUNNING, ""
                    if step is Step.COMPLETE:
                        mesh.version = task.target_version
                elif step is Step.ROLLBACK:
                    mesh.phase, mesh.reason = MeshPhase.ROLLBACK_FAILED, root.reason
                else:
                    mesh.phase, mesh.reason = MeshPhase.UPGRADE_FAILED, root.reason
                mesh.updated_at = now
                uow.meshes.save(mesh)
            uow.commit()
