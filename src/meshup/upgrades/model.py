"""The canary upgrade task and its step state machine (asm-api.md §5). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from meshup.errors import Conflict, InvalidRequest, shown


class Step(StrEnum):
    PRECHECK = "PreCheck"
    CONTROL_PLANE = "ControlPlaneUpgrade"
    DATA_PLANE = "DataPlaneUpgrade"
    COMPLETE = "Complete"
    ROLLBACK = "Rollback"


class TaskPhase(StrEnum):
    RUNNING = "Running"
    WAITING = "Waiting"
    FAILED = "Failed"
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"


class Strategy(StrEnum):
    CANARY = "Canary"


class TargetType(StrEnum):
    IN_CLUSTER = "InCluster"


# Steps that change the mesh (and so its phase while they run).
MUTATING = frozenset({Step.CONTROL_PLANE, Step.DATA_PLANE, Step.COMPLETE})


@dataclass(frozen=True, slots=True)
class StepRun:
    step: Step
    job_id: str
    phase: str  # Running | Success | Failed


@dataclass(frozen=True, slots=True)
class TaskState:
    phase: TaskPhase
    namespaces: tuple[str, ...]  # injected namespaces of the mesh when the task was created
    migrated: tuple[str, ...] = ()
    history: tuple[StepRun, ...] = field(default_factory=tuple)

    @property
    def last(self) -> StepRun | None:
        return self.history[-1] if self.history else None

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(ns for ns in self.namespaces if ns not in self.migrated)

    def started(self, step: Step) -> bool:
        return any(run.step is step for run in self.history)

    def succeeded(self, step: Step) -> bool:
        return any(run.step is step and run.phase == "Success" for run in self.history)

    @property
    def deletable(self) -> bool:
        if self.phase in (TaskPhase.COMPLETED, TaskPhase.ROLLED_BACK):
            return True
        return self.phase is not TaskPhase.RUNNING and all(run.step is Step.PRECHECK for run in self.history)


@dataclass(slots=True)
class UpgradeTask:
    """A canary upgrade task: what was asked (immutable after creation) and where it stands."""

    id: str
    account_id: str
    project_id: str
    mesh_id: str
    name: str
    strategy: str
    target_type: str
    source_version: str
    target_version: str
    state: TaskState
    step: Step | None  # the step started last
    step_namespaces: tuple[str, ...]  # what a DataPlaneUpgrade step was asked to migrate
    job_id: str | None  # root job of the step started last
    message: str
    created_at: datetime
    updated_at: datetime

    @property
    def phase(self) -> TaskPhase:
        return self.state.phase

    @property
    def active(self) -> bool:
        return self.state.phase not in (TaskPhase.COMPLETED, TaskPhase.ROLLED_BACK)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A task list request, parsed: newest first, ``limit`` tasks after the task ``marker``."""

    mesh_id: str | None = None
    limit: int = 100
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: tuple[UpgradeTask, ...]
    next_marker: str | None  # None: this page is the last


@dataclass(frozen=True, slots=True)
class CurrentStep:
    step: Step
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpgradeCreate:
    """A create request, parsed (``upgrades.schemas``): every field is given."""

    name: str
    mesh_id: str
    strategy: Strategy
    target_version: str
    target_type: TargetType
    current_step: CurrentStep


@dataclass(frozen=True, slots=True)
class UpgradeChange:
    """A PUT request, parsed: None where the body left a field out."""

    current_step: CurrentStep | None
    name: str | None = None
    mesh_id: str | None = None
    strategy: Strategy | None = None
    target_version: str | None = None
    target_type: TargetType | None = None


def check_immutable(change: UpgradeChange, task: UpgradeTask) -> None:
    """Fields fixed at creation may be repeated in a PUT, not changed (400)."""
    for given, stored, path in (
        (change.name, task.name, "metadata.name"),
        (change.mesh_id, task.mesh_id, "spec.meshId"),
        (change.strategy, task.strategy, "spec.upgradeStrategy"),
        (change.target_version, task.target_version, "spec.targetVersion"),
        (change.target_type, task.target_type, "spec.targetType"),
    ):
        if given is not None and given != stored:
            raise InvalidRequest(f"{path}: cannot be changed (is {stored})")


def allowed_next(state: TaskState) -> list[Step]:
    """The steps a PUT may start now, in the order a user would take them."""
    if state.phase in (TaskPhase.RUNNING, TaskPhase.COMPLETED, TaskPhase.ROLLED_BACK):
        return []
    if state.started(Step.ROLLBACK):
        return [Step.ROLLBACK]  # only a failed rollback can be here: retry it
    if state.started(Step.COMPLETE):
        return [Step.COMPLETE]  # point of no return: only a failed Complete can be here
    steps: list[Step] = []
    if not state.started(Step.CONTROL_PLANE):
        steps.append(Step.PRECHECK)
        if state.succeeded(Step.PRECHECK) and state.last is not None and state.last.phase == "Success":
            steps.append(Step.CONTROL_PLANE)
        return steps
    if not state.succeeded(Step.CONTROL_PLANE):
        return [Step.CONTROL_PLANE, Step.ROLLBACK]
    if state.pending:
        steps.append(Step.DATA_PLANE)
    else:
        steps.append(Step.COMPLETE)
    steps.append(Step.ROLLBACK)
    return steps


def describe(steps: Sequence[Step]) -> str:
    return ", ".join(step.value for step in steps) if steps else "nothing"


def check_start(state: TaskState, step: Step, namespaces: Sequence[str]) -> tuple[str, ...]:
    """Refuse a transition that is not allowed now (409) or names bad namespaces (400).

    Returns the namespaces a DataPlaneUpgrade step will migrate (empty for other steps).
    """
    if state.phase is TaskPhase.RUNNING:
        running = state.last.step.value if state.last else "a step"
        raise Conflict(f"{running} is still running; wait for its job to finish")
    if state.phase in (TaskPhase.COMPLETED, TaskPhase.ROLLED_BACK):
        raise Conflict(f"the upgrade task is {state.phase.value}; nothing more can be started")
    allowed = allowed_next(state)
    if step not in allowed:
        raise Conflict(f"{step.value} is not allowed now; allowed now: {describe(allowed)}")
    if step is not Step.DATA_PLANE:
        if namespaces:
            raise InvalidRequest("spec.currentStep.namespaces: only allowed with step DataPlaneUpgrade")
        return ()
    if not namespaces:
        return state.pending
    chosen: list[str] = []
    for name in namespaces:
        if name in chosen:
            raise InvalidRequest(f"spec.currentStep.namespaces: {shown(name)} is listed twice")
        if name in state.migrated:
            raise InvalidRequest(f"spec.currentStep.namespaces: {shown(name)} is already migrated")
        if name not in state.namespaces:
            known = ", ".join(state.pending) or "none"
            raise InvalidRequest(
                f"spec.currentStep.namespaces: {shown(name)} is not an injected namespace of the mesh (pending: {known})"
            )
        chosen.append(name)
    return tuple(chosen)


def started(state: TaskState, step: Step, job_id: str) -> TaskState:
    return replace(state, phase=TaskPhase.RUNNING, history=(*state.history, StepRun(step, job_id, "Running")))


def finished(state: TaskState, job_id: str, success: bool, migrated_now: Sequence[str]) -> TaskState:
    """The step whose root job is ``job_id`` ended; ``migrated_now`` lists namespaces it migrated."""
    history = tuple(
        replace(run, phase="Success" if success else "Failed") if run.job_id == job_id else run
        for run in state.history
    )
    run = next((r for r in history if r.job_id == job_id), None)
    migrated = state.migrated
    if run is not None and run.step is Step.DATA_PLANE:
        migrated = (*migrated, *(ns for ns in migrated_now if ns not in migrated))
    if run is not None and run.step is Step.ROLLBACK and success:
        migrated = ()
    phase = TaskPhase.WAITING if success else TaskPhase.FAILED
    if success and run is not None and run.step is Step.COMPLETE:
        phase = TaskPhase.COMPLETED
    if success and run is not None and run.step is Step.ROLLBACK:
        phase = TaskPhase.ROLLED_BACK
    return replace(state, phase=phase, migrated=migrated, history=history)


def follow_injection(state: TaskState, injected: Sequence[str]) -> TaskState:
    """The mesh's sidecar injection was changed by a user while the task is active; ``injected``
    names the namespaces that inject the source or the target revision now. One no longer injected
    leaves the task (neither pending nor migrated: it has no sidecars to upgrade); one newly injected
    joins as pending (it got the source revision, so a DataPlaneUpgrade must migrate it before
    Complete). The others keep their place."""
    kept = tuple(ns for ns in state.namespaces if ns in injected)
    added = tuple(ns for ns in dict.fromkeys(injected) if ns not in state.namespaces)
    migrated = tuple(ns for ns in state.migrated if ns in injected)
    return replace(state, namespaces=(*kept, *added), migrated=migrated)
