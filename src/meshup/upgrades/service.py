"""Use cases of canary upgrade tasks: create, read, advance a step, delete; and step completion."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from meshup.drivers.base import ClusterDrivers
from meshup.errors import Conflict, InvalidRequest, NotFound
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService, MeshFacts
from meshup.jobs.model import JobNode, Phase
from meshup.jobs.service import shown
from meshup.meshes.versions import catalogue
from meshup.store import jobs as job_store
from meshup.store import meshes as mesh_store
from meshup.store import upgrades as task_store
from meshup.upgrades import model
from meshup.upgrades.model import MUTATING, Step, StepRun, TaskPhase, TaskState
from meshup.upgrades.plans import PlanContext, injected_namespaces, migrated_by, plan_step
from meshup.upgrades.schemas import UpgradeRequest, parse_upgrade, render_task

OWNER = "upgradeTask"
# Anything else cannot be a stored task id (and a NUL would make PostgreSQL refuse the query).
_TASK_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def mesh_facts(mesh: Any) -> MeshFacts:
    tags = [(str(tag["key"]), str(tag.get("value", ""))) for tag in (mesh.tags or [])]
    return MeshFacts(str(mesh.id), str(mesh.enterprise_project_id), tags)


def task_state(row: Any) -> TaskState:
    history = tuple(StepRun(Step(h["step"]), str(h["jobId"]), str(h["phase"])) for h in (row.history or []))
    return TaskState(
        phase=TaskPhase(row.phase),
        namespaces=tuple(row.namespaces or []),
        migrated=tuple(row.migrated or []),
        history=history,
    )


def _history(state: TaskState) -> list[dict[str, str]]:
    return [{"step": run.step.value, "jobId": run.job_id, "phase": run.phase} for run in state.history]


class UpgradeService:
    def __init__(self, identity: IdentityService, schedule: Any, *, drivers: ClusterDrivers) -> None:
        self.identity = identity
        self.schedule = schedule  # engine.worker.schedule: make a new tree's first leaves runnable
        self.drivers = drivers

    # -- reads and writes from the API -----------------------------------------------------------

    def _visible_task(
        self, conn: Connection, caller: Caller, project_id: str, task_id: str, ip: str
    ) -> tuple[Any, Any]:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        row = task_store.get_task(conn, task_id, for_update=True) if _TASK_ID.fullmatch(task_id) else None
        if row is None or row.project_id != project_id:
            raise NotFound(f"mesh upgrade task {shown(task_id)} not found")
        mesh = mesh_store.mesh_for_update(conn, row.mesh_id)
        if mesh is None:
            raise NotFound(f"mesh upgrade task {shown(task_id)} not found")
        self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
        return row, mesh

    def get(self, conn: Connection, caller: Caller, project_id: str, task_id: str, ip: str) -> dict[str, Any]:
        row, _ = self._visible_task(conn, caller, project_id, task_id, ip)
        return render_task(row)

    def create(
        self, conn: Connection, caller: Caller, project_id: str, body: Any, ip: str, now: datetime
    ) -> dict[str, Any]:
        self.identity.precheck(caller, actions.UPGRADE, project_id)
        request = parse_upgrade(body, create=True)
        assert request.mesh_id is not None and request.target_version is not None
        assert request.current_step is not None and request.name is not None
        mesh = mesh_store.mesh_for_update(conn, request.mesh_id)
        if mesh is None or mesh.project_id != project_id or mesh.deleted_at is not None:
            raise NotFound(f"mesh {shown(request.mesh_id)} not found")
        self.identity.authorize(caller, actions.UPGRADE, project_id, mesh_facts(mesh), ip)
        if mesh.phase != "Running":
            raise Conflict(
                f"mesh {mesh.name} is {mesh.phase}; an upgrade task can start only while it is Running"
            )
        active = task_store.active_task_for_mesh(conn, mesh.id)
        if active is not None:
            raise Conflict(
                f"mesh {mesh.name} already has an active upgrade task {active.id} ({active.phase})"
            )
        refusal = catalogue().upgrade_refusal(mesh.version, request.target_version)
        if refusal is not None:
            raise InvalidRequest(f"spec.targetVersion: {refusal}")
        if request.current_step.step is not Step.PRECHECK:
            raise Conflict(
                f"{request.current_step.step.value} is not allowed now; a new task starts with PreCheck"
            )
        task_id = str(uuid.uuid4())
        context = self._plan_context(conn, mesh, request.target_version, task_id, now)
        state = TaskState(TaskPhase.WAITING, injected_namespaces(context.clusters, mesh.version))
        model.check_start(state, Step.PRECHECK, request.current_step.namespaces)
        root_id = self._start_tree(conn, context, Step.PRECHECK, (), mesh, now)
        state = model.started(state, Step.PRECHECK, root_id)
        task_store.insert_task(
            conn,
            {
                "id": task_id,
                "account_id": mesh.account_id,
                "project_id": project_id,
                "mesh_id": mesh.id,
                "name": request.name,
                "strategy": request.strategy,
                "target_type": request.target_type,
                "source_version": mesh.version,
                "target_version": request.target_version,
                "current_step": {"step": Step.PRECHECK.value},
                "phase": state.phase.value,
                "step": Step.PRECHECK.value,
                "job_id": root_id,
                "message": "",
                "namespaces": list(state.namespaces),
                "migrated": [],
                "history": _history(state),
                "active_mesh_id": mesh.id,
                "created_at": now,
                "updated_at": now,
            },
        )
        row = task_store.get_task(conn, task_id)
        return render_task(row)

    def update(
        self,
        conn: Connection,
        caller: Caller,
        project_id: str,
        task_id: str,
        body: Any,
        ip: str,
        now: datetime,
    ) -> dict[str, Any]:
        row, mesh = self._visible_task(conn, caller, project_id, task_id, ip)
        request = parse_upgrade(body, create=False)
        _check_immutable(request, row)
        if request.current_step is None:
            raise InvalidRequest("spec.currentStep: required")
        step = request.current_step.step
        state = task_state(row)
        namespaces = model.check_start(state, step, request.current_step.namespaces)
        context = self._plan_context(
            conn, mesh, row.target_version, row.id, now, source_version=row.source_version
        )
        root_id = self._start_tree(conn, context, step, namespaces, mesh, now)
        state = model.started(state, step, root_id)
        current: dict[str, Any] = {"step": step.value}
        if step is Step.DATA_PLANE:
            current["namespaces"] = list(namespaces)
        task_store.update_task(
            conn,
            row.id,
            {
                "current_step": current,
                "phase": state.phase.value,
                "step": step.value,
                "job_id": root_id,
                "message": "",
                "history": _history(state),
                "updated_at": now,
            },
        )
        if step in MUTATING:
            mesh_store.set_mesh_state(conn, mesh.id, phase="Upgrading", now=now)
        elif step is Step.ROLLBACK:
            mesh_store.set_mesh_state(conn, mesh.id, phase="RollingBack", now=now)
        return render_task(task_store.get_task(conn, row.id))

    def delete(
        self, conn: Connection, caller: Caller, project_id: str, task_id: str, ip: str
    ) -> dict[str, Any]:
        row, _ = self._visible_task(conn, caller, project_id, task_id, ip)
        state = task_state(row)
        if state.phase is TaskPhase.RUNNING:
            raise Conflict(
                f"{row.step} of upgrade task {row.id} is still running; wait for its job to finish"
            )
        if not state.deletable:
            raise Conflict(
                f"upgrade task {row.id} is {row.phase} after {row.step}; roll back or complete first "
                "(a task can be deleted when Completed, RolledBack, or when it has run only pre-checks)"
            )
        document = render_task(row)
        task_store.delete_task(conn, row.id)
        return document

    # -- helpers ---------------------------------------------------------------------------------

    def _plan_context(
        self,
        conn: Connection,
        mesh: Any,
        target_version: str,
        task_id: str,
        now: datetime,
        *,
        source_version: str | None = None,
    ) -> PlanContext:
        cluster_ids = [str(c.get("clusterID")) for c in (mesh.clusters or [])]
        driver = self.drivers.for_account(mesh.account_id)
        views = [driver.facts(cid) for cid in cluster_ids]
        return PlanContext(
            mesh_id=mesh.id,
            mesh_name=mesh.name,
            source_version=source_version or mesh.version,
            target_version=target_version,
            clusters=views,
            now=now,
            owner={"owner": OWNER, "taskId": task_id},
        )

    def _start_tree(
        self,
        conn: Connection,
        context: PlanContext,
        step: Step,
        namespaces: tuple[str, ...],
        mesh: Any,
        now: datetime,
    ) -> str:
        jobs = plan_step(step, context, namespaces)
        job_store.insert_nodes(conn, jobs, mesh_id=mesh.id, project_id=mesh.project_id)
        root_id = jobs[0].node.id
        self.schedule(conn, root_id, now)
        return root_id

    # -- engine hook -----------------------------------------------------------------------------

    def on_step_finished(
        self, conn: Connection, root: JobNode, payloads: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        """A step's root job ended: move the task and the mesh on, in the job's own transaction."""
        task_id = str(payloads[root.id].get("taskId", ""))
        row = task_store.get_task(conn, task_id, for_update=True)
        if row is None or row.job_id != root.id:
            return  # the task was deleted, or this is not its latest step
        success = root.phase is Phase.SUCCESS
        step = Step(row.step)
        migrated_now = migrated_by(root, payloads) if step is Step.DATA_PLANE else []
        state = model.finished(task_state(row), root.id, success, migrated_now)
        values: dict[str, Any] = {
            "phase": state.phase.value,
            "migrated": list(state.migrated),
            "history": _history(state),
            "message": "" if success else root.reason,
            "updated_at": now,
        }
        if state.phase in (TaskPhase.COMPLETED, TaskPhase.ROLLED_BACK):
            values["active_mesh_id"] = None
        task_store.update_task(conn, row.id, values)
        if step in MUTATING:
            if success and step is Step.COMPLETE:
                mesh_store.set_mesh_state(
                    conn, row.mesh_id, phase="Running", now=now, version=row.target_version
                )
            elif success:
                mesh_store.set_mesh_state(conn, row.mesh_id, phase="Running", now=now)
            else:
                mesh_store.set_mesh_state(
                    conn, row.mesh_id, phase="UpgradeFailed", now=now, reason=root.reason
                )
        elif step is Step.ROLLBACK:
            phase = "Running" if success else "RollbackFailed"
            mesh_store.set_mesh_state(
                conn, row.mesh_id, phase=phase, now=now, reason="" if success else root.reason
            )


def _check_immutable(request: UpgradeRequest, row: Any) -> None:
    for given, stored, path in (
        (request.name, row.name, "metadata.name"),
        (request.mesh_id, row.mesh_id, "spec.meshId"),
        (request.strategy, row.strategy, "spec.upgradeStrategy"),
        (request.target_version, row.target_version, "spec.targetVersion"),
        (request.target_type, row.target_type, "spec.targetType"),
    ):
        if given is not None and given != stored:
            raise InvalidRequest(f"{path}: cannot be changed (is {stored})")
