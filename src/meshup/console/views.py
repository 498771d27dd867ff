"""What the pages show, derived from the API's documents (meshes, upgrade tasks, job trees).

Which step a button may start comes from the task state machine itself (``allowed_next``), fed
with a state rebuilt from the task document: the document does not carry the step history, but
its last step, phase and namespaces determine everything ``allowed_next`` looks at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshup.meshes.versions import catalogue
from meshup.upgrades.model import Step, StepRun, TaskPhase, TaskState, allowed_next

PHASE_SYMBOLS = {"Success": "✓", "Failed": "✗", "Running": "●", "Initializing": "○"}
STEP_LABELS = {
    Step.PRECHECK: "Run pre-check",
    Step.CONTROL_PLANE: "Upgrade control plane",
    Step.DATA_PLANE: "Migrate namespaces",
    Step.COMPLETE: "Complete",
    Step.ROLLBACK: "Roll back",
}
# Meshes in these phases change on their own: their page keeps itself current.
MOVING_MESH_PHASES = frozenset({"Creating", "Deleting", "Upgrading", "RollingBack"})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class MeshView:
    id: str
    name: str
    version: str
    phase: str
    reason: str
    clusters: list[str]
    tags: list[str]
    enterprise_project: str
    job_id: str  # its latest CreateMesh/DeleteMesh job

    @property
    def moving(self) -> bool:
        return self.phase in MOVING_MESH_PHASES


def mesh_view(document: Any) -> MeshView:
    metadata, spec, status = (_dict(_dict(document).get(key)) for key in ("metadata", "spec", "status"))
    extend = _dict(spec.get("extendParams"))
    return MeshView(
        id=str(metadata.get("uid", "")),
        name=str(metadata.get("name", "")),
        version=str(spec.get("version", "")),
        phase=str(status.get("phase", "")),
        reason=str(status.get("reason", "")),
        clusters=[str(_dict(c).get("clusterID", "")) for c in _list(extend.get("clusters"))],
        tags=[f"{_dict(t).get('key', '')}={_dict(t).get('value', '')}" for t in _list(spec.get("tags"))],
        enterprise_project=str(extend.get("enterpriseProjectId", "0")),
        job_id=str(status.get("jobId", "")),
    )


def upgrade_targets(version: str) -> list[str]:
    """The versions a new task may upgrade ``version`` to, as the upgrade paths allow."""
    versions = catalogue()
    return [target for target in versions.versions if versions.upgrade_refusal(version, target) is None]


@dataclass(frozen=True, slots=True)
class Action:
    step: str
    label: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    name: str
    target_version: str
    phase: str
    step: str
    job_id: str
    message: str
    migrated: list[str]
    pending: list[str]
    migrating: list[str]  # the namespaces of a data-plane step that runs now
    actions: list[Action]

    @property
    def running(self) -> bool:
        return self.phase == TaskPhase.RUNNING.value

    @property
    def finished(self) -> bool:
        return self.phase in (TaskPhase.COMPLETED.value, TaskPhase.ROLLED_BACK.value)

    def allows(self, step: str) -> bool:
        return any(action.step == step and action.enabled for action in self.actions)


def state_of(document: Any) -> TaskState:
    """A task state with the same ``allowed_next`` as the task the document describes."""
    status = _dict(_dict(document).get("status"))
    migrated = tuple(str(ns) for ns in _list(status.get("migratedNamespaces")))
    pending = tuple(str(ns) for ns in _list(status.get("pendingNamespaces")))
    try:
        phase = TaskPhase(str(status.get("phase", "")))
        last = Step(str(status.get("step", "")))
    except ValueError:
        return TaskState(TaskPhase.RUNNING, migrated + pending, migrated)  # unknown: offer nothing
    job_id = str(status.get("jobId", ""))
    last_phase = {TaskPhase.RUNNING: "Running", TaskPhase.FAILED: "Failed"}.get(phase, "Success")
    # Steps that must have succeeded before the last one could start.
    before = {
        Step.PRECHECK: (),
        Step.CONTROL_PLANE: (Step.PRECHECK,),
        Step.DATA_PLANE: (Step.PRECHECK, Step.CONTROL_PLANE),
        Step.COMPLETE: (Step.PRECHECK, Step.CONTROL_PLANE),
        Step.ROLLBACK: (Step.PRECHECK, Step.CONTROL_PLANE),
    }[last]
    history = (*(StepRun(step, "", "Success") for step in before), StepRun(last, job_id, last_phase))
    return TaskState(phase, migrated + pending, migrated, history)


def task_view(document: Any) -> TaskView:
    metadata, spec, status = (_dict(_dict(document).get(key)) for key in ("metadata", "spec", "status"))
    allowed = set(allowed_next(state_of(document)))
    return TaskView(
        id=str(metadata.get("uid", "")),
        name=str(metadata.get("name", "")),
        target_version=str(spec.get("targetVersion", "")),
        phase=str(status.get("phase", "")),
        step=str(status.get("step", "")),
        job_id=str(status.get("jobId", "")),
        message=str(status.get("message", "")),
        migrated=[str(ns) for ns in _list(status.get("migratedNamespaces"))],
        pending=[str(ns) for ns in _list(status.get("pendingNamespaces"))],
        migrating=[str(ns) for ns in _list(_dict(spec.get("currentStep")).get("namespaces"))]
        if status.get("phase") == TaskPhase.RUNNING.value and status.get("step") == Step.DATA_PLANE.value
        else [],
        actions=[Action(step.value, STEP_LABELS[step], step in allowed) for step in Step],
    )


@dataclass(frozen=True, slots=True)
class TreeRow:
    uid: str
    depth: int
    type: str
    target: str
    phase: str
    symbol: str
    duration: str
    reason: str


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(start: Any, end: Any, now: datetime) -> str:
    began = _instant(start)
    if began is None:
        return ""
    seconds = max(0, int(((_instant(end) or now) - began).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def tree_rows(job: Any, now: datetime | None = None) -> list[TreeRow]:
    """The job tree depth first, in execution order, one row per node."""
    now = now or datetime.now(UTC)
    rows: list[TreeRow] = []

    def visit(node: Any, depth: int) -> None:
        metadata, spec, status = (_dict(_dict(node).get(key)) for key in ("metadata", "spec", "status"))
        phase = str(status.get("phase", ""))
        rows.append(
            TreeRow(
                uid=str(metadata.get("uid", "")),
                depth=depth,
                type=str(spec.get("type", "")),
                target=str(spec.get("target", "")),
                phase=phase,
                symbol=PHASE_SYMBOLS.get(phase, "?"),
                duration=duration(status.get("startTime"), status.get("completionTime"), now),
                reason=str(status.get("reason", "")),
            )
        )
        for child in _list(spec.get("subjobs")):
            visit(child, depth + 1)

    if job is not None:
        visit(job, 0)
    return rows


@dataclass(frozen=True, slots=True)
class TraceView:
    time: str
    name: str
    rating: str
    code: str
    user: str
    resource: str
    source_ip: str
    message: str


def trace_view(document: Any) -> TraceView:
    """One CTS trace as a row of the audit page."""
    trace = _dict(document)
    millis = trace.get("time")
    when = (
        datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(millis, int)
        else ""
    )
    resource = str(trace.get("resource_name") or trace.get("resource_id") or "")
    return TraceView(
        time=when,
        name=str(trace.get("trace_name", "")),
        rating=str(trace.get("trace_rating", "")),
        code=str(trace.get("code", "")),
        user=str(_dict(trace.get("user")).get("name", "")),
        resource=f"{trace.get('resource_type', '')} {resource}".strip(),
        source_ip=str(trace.get("source_ip", "")),
        message=str(trace.get("message") or ""),
    )
