"""A canary upgrade from start to end: pre-check, control plane, namespaces in batches, complete.

The tool looks at the task after every step and decides the next one from its ``status``, so the
same loop starts an upgrade and resumes one that something interrupted. A failed control-plane or
data-plane step is rolled back; a failed pre-check changed nothing and is only reported.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from upgrade_tool.api import AsmApi

ROLLED_BACK_ON_FAILURE = ("ControlPlaneUpgrade", "DataPlaneUpgrade")


class Outcome(StrEnum):
    COMPLETED = "Completed"  # the mesh runs the target version
    ROLLED_BACK = "RolledBack"  # a step failed and the mesh is back on its version
    FAILED = "Failed"  # the pre-check failed (nothing changed), or a rollback or Complete failed


@dataclass(frozen=True, slots=True)
class StepRun:
    step: str
    job_id: str
    phase: str  # Success or Failed
    reason: str = ""  # a failed job's reason names the failed leaf and why
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    task_id: str
    mesh_id: str
    target_version: str
    outcome: Outcome
    steps: tuple[StepRun, ...]

    @property
    def failure(self) -> StepRun | None:
        return next((run for run in self.steps if run.phase == "Failed"), None)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome is Outcome.COMPLETED else 1


class JobTimeout(Exception):
    def __init__(self, job_id: str, seconds: float) -> None:
        super().__init__(f"job {job_id} did not end within {seconds:g}s")
        self.job_id = job_id


class Upgrader:
    """``sleep`` is called between two polls of a job: ``time.sleep`` for real use; a test can make
    simulated time pass there instead."""

    def __init__(
        self,
        api: AsmApi,
        *,
        batch_size: int = 2,
        poll_interval: float = 5.0,
        timeout: float = 3600.0,
        sleep: Callable[[float], object] = time.sleep,
        on_step: Callable[[StepRun], object] = lambda run: None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.api = api
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.sleep = sleep
        self.on_step = on_step

    def upgrade(self, mesh_id: str, target_version: str, name: str = "") -> UpgradeResult:
        self.api.mesh(mesh_id)  # an unknown mesh fails here, before anything starts
        name = name or "to-" + re.sub(r"[^a-z0-9]+", "-", target_version.lower()).strip("-")
        return self._drive(self.api.create_task(mesh_id, target_version, name))

    def resume(self, task_id: str) -> UpgradeResult:
        return self._drive(self.api.task(task_id))

    def wait(self, job_id: str) -> dict[str, Any]:
        """Poll the job until it is ``Success`` or ``Failed``."""
        waited = 0.0
        while True:
            job = self.api.job(job_id)
            if job["status"]["phase"] in ("Success", "Failed"):
                return job
            if waited >= self.timeout:
                raise JobTimeout(job_id, waited)
            self.sleep(self.poll_interval)
            waited += self.poll_interval

    def _drive(self, task: dict[str, Any]) -> UpgradeResult:
        runs: list[StepRun] = []
        while True:
            status = task["status"]
            phase = status["phase"]
            if phase == "Running":
                runs.append(self._finish(task))
                task = self.api.task(task["metadata"]["uid"])
            elif phase in (Outcome.COMPLETED, Outcome.ROLLED_BACK):
                return self._result(task, Outcome(phase), runs)
            elif phase == "Failed":
                if status["step"] not in ROLLED_BACK_ON_FAILURE:
                    return self._result(task, Outcome.FAILED, runs)
                task = self.api.start_step(task, "Rollback")
            else:  # Waiting: the last step succeeded
                task = self.api.start_step(task, *self._next_step(status))

    def _next_step(self, status: dict[str, Any]) -> tuple[str, list[str] | None]:
        if status["step"] == "PreCheck":
            return "ControlPlaneUpgrade", None
        pending = list(status.get("pendingNamespaces") or [])
        if pending:
            return "DataPlaneUpgrade", pending[: self.batch_size]
        return "Complete", None

    def _finish(self, task: dict[str, Any]) -> StepRun:
        job = self.wait(task["status"]["jobId"])
        current = task["spec"]["currentStep"]
        run = StepRun(
            step=current["step"],
            job_id=job["metadata"]["uid"],
            phase=job["status"]["phase"],
            reason=job["status"].get("reason") or "",
            namespaces=tuple(current.get("namespaces") or ()),
        )
        self.on_step(run)
        return run

    @staticmethod
    def _result(task: dict[str, Any], outcome: Outcome, runs: list[StepRun]) -> UpgradeResult:
        return UpgradeResult(
            task_id=task["metadata"]["uid"],
            mesh_id=task["spec"]["meshId"],
            target_version=task["spec"]["targetVersion"],
            outcome=outcome,
            steps=tuple(runs),
        )
