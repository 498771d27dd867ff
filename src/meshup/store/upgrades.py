"""Canary upgrade tasks, as :class:`meshup.upgrades.model.UpgradeTask`.

``active_mesh_id`` (unique) holds the mesh while a task is active, so a mesh has one active task
at most; ``save(..., started_after=...)`` is a conditional update, so of two requests that start a
step on one task only one can win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from meshup.store import tables as t
from meshup.store.errors import Collision
from meshup.timefmt import as_utc
from meshup.upgrades.model import Step, StepRun, TaskPhase, TaskState, UpgradeTask

u = t.upgrade_tasks


class UpgradeTaskRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, task_id: str, *, lock: bool = False) -> UpgradeTask | None:
        query = select(u).where(u.c.id == task_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _task(row)

    def active_for_mesh(self, mesh_id: str) -> UpgradeTask | None:
        """The mesh's task that is neither Completed nor RolledBack, if any."""
        row = self.conn.execute(select(u).where(u.c.active_mesh_id == mesh_id)).first()
        return None if row is None else _task(row)

    def listed(self, project_id: str, mesh_id: str | None = None) -> list[UpgradeTask]:
        """The project's tasks (of one mesh if given), newest first (ties: by id, descending)."""
        query = select(u).where(u.c.project_id == project_id)
        if mesh_id is not None:
            query = query.where(u.c.mesh_id == mesh_id)
        query = query.order_by(u.c.created_at.desc(), u.c.id.desc())
        return [_task(row) for row in self.conn.execute(query)]

    def add(self, task: UpgradeTask) -> None:
        self.conn.execute(
            insert(u).values(
                id=task.id,
                account_id=task.account_id,
                project_id=task.project_id,
                mesh_id=task.mesh_id,
                name=task.name,
                strategy=task.strategy,
                target_type=task.target_type,
                source_version=task.source_version,
                target_version=task.target_version,
                created_at=task.created_at,
                **_state_columns(task),
            )
        )

    def save(self, task: UpgradeTask, *, started_after: str | None = None) -> None:
        """Write the task's state. With ``started_after`` (the job id of the step the caller saw
        last) the write happens only if no other step has been started since, else Collision."""
        query = update(u).where(u.c.id == task.id)
        if started_after is not None:
            query = query.where(u.c.job_id == started_after, u.c.phase != TaskPhase.RUNNING.value)
        if self.conn.execute(query.values(**_state_columns(task))).rowcount != 1:
            raise Collision(f"upgrade task {task.id} changed while a step was being started")

    def delete(self, task_id: str) -> None:
        self.conn.execute(delete(u).where(u.c.id == task_id))


def _state_columns(task: UpgradeTask) -> dict[str, Any]:
    state = task.state
    current: dict[str, Any] = {"step": task.step.value if task.step else None}
    if task.step_namespaces:
        current["namespaces"] = list(task.step_namespaces)
    return {
        "current_step": current,
        "phase": state.phase.value,
        "step": task.step.value if task.step else None,
        "job_id": task.job_id,
        "message": task.message,
        "namespaces": list(state.namespaces),
        "migrated": list(state.migrated),
        "history": [
            {"step": run.step.value, "jobId": run.job_id, "phase": run.phase} for run in state.history
        ],
        "active_mesh_id": task.mesh_id if task.active else None,
        "updated_at": task.updated_at,
    }


def _task(row: Row[Any]) -> UpgradeTask:
    history = tuple(StepRun(Step(h["step"]), str(h["jobId"]), str(h["phase"])) for h in row.history or [])
    current = dict(row.current_step or {})
    return UpgradeTask(
        id=str(row.id),
        account_id=str(row.account_id),
        project_id=str(row.project_id),
        mesh_id=str(row.mesh_id),
        name=str(row.name),
        strategy=str(row.strategy),
        target_type=str(row.target_type),
        source_version=str(row.source_version),
        target_version=str(row.target_version),
        state=TaskState(
            phase=TaskPhase(row.phase),
            namespaces=tuple(row.namespaces or ()),
            migrated=tuple(row.migrated or ()),
            history=history,
        ),
        step=Step(row.step) if row.step else None,
        step_namespaces=tuple(current.get("namespaces") or ()),
        job_id=row.job_id,
        message=row.message or "",
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
