"""The MeshUpgrade on the wire (asm-api.md §5): one set of models parses the create and update
bodies, renders the document and describes them in ``/openapi.json``; ``parse_create``,
``parse_change`` and ``render_task`` are the one mapping to and from the domain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from meshup.timefmt import rfc3339
from meshup.upgrades.model import (
    CurrentStep,
    Step,
    Strategy,
    TargetType,
    TaskPage,
    TaskPhase,
    TaskQuery,
    UpgradeChange,
    UpgradeCreate,
    UpgradeTask,
)
from meshup.wire import NO_NUL, DocumentModel, RequestModel, construct, explain, validate

TASK_NAME = explain(
    r"^[a-z]$|^[a-z][a-z0-9-]{0,62}[a-z0-9]$",
    "1-64 lowercase letters, digits and '-', starting with a letter, not ending with '-'",
)
MAX_NAMESPACES = 1000
MAX_LIMIT = 1000

TaskName = Annotated[str, StringConstraints(max_length=64, pattern=TASK_NAME)]
AnyTaskName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
MeshId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=NO_NUL)]
NamespaceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NO_NUL)]
# Enums are matched by value (JSON has no enum instances); strict elsewhere.
StepValue = Annotated[Step, Field(strict=False)]
StrategyValue = Annotated[Strategy, Field(strict=False)]
TargetTypeValue = Annotated[TargetType, Field(strict=False)]


class CurrentStepModel(RequestModel):
    step: StepValue = Field(description="The step to start now.")
    namespaces: list[NamespaceName] | None = Field(
        None,
        max_length=MAX_NAMESPACES,
        description="DataPlaneUpgrade only: namespaces to migrate now (empty or absent: all that remain).",
    )


# --- requests -------------------------------------------------------------------------------------


class UpgradeCreateMetadata(RequestModel):
    name: TaskName


class UpgradeCreateSpec(RequestModel):
    meshId: MeshId
    upgradeStrategy: StrategyValue
    targetVersion: Version
    targetType: TargetTypeValue
    currentStep: CurrentStepModel = Field(description="A new task starts with PreCheck.")


class MeshUpgradeCreateBody(RequestModel):
    """POST body; ``status`` and other read-only fields of the document are ignored."""

    kind: Literal["MeshUpgrade"] | None = None
    apiVersion: Literal["v1"] | None = None
    metadata: UpgradeCreateMetadata
    spec: UpgradeCreateSpec


class UpgradeChangeMetadata(RequestModel):
    name: AnyTaskName | None = Field(None, description="Immutable: may be repeated, not changed.")


class UpgradeChangeSpec(RequestModel):
    meshId: MeshId | None = Field(None, description="Immutable.")
    upgradeStrategy: StrategyValue | None = Field(None, description="Immutable.")
    targetVersion: Version | None = Field(None, description="Immutable.")
    targetType: TargetTypeValue | None = Field(None, description="Immutable.")
    currentStep: CurrentStepModel


class MeshUpgradeUpdateBody(RequestModel):
    """PUT body: ``spec.currentStep`` starts the next step; the other fields may only be repeated
    (a GET document with a new ``currentStep`` is a valid body)."""

    kind: Literal["MeshUpgrade"] | None = None
    apiVersion: Literal["v1"] | None = None
    metadata: UpgradeChangeMetadata | None = None
    spec: UpgradeChangeSpec


# --- the document ---------------------------------------------------------------------------------


class UpgradeMetadata(DocumentModel):
    name: str
    uid: str
    creationTimestamp: str


class UpgradeSpec(DocumentModel):
    meshId: str
    upgradeStrategy: Strategy
    targetVersion: str
    targetType: TargetType
    currentStep: CurrentStepModel


class UpgradeStatus(DocumentModel):
    phase: TaskPhase
    step: Step = Field(description="The step started last.")
    jobId: str = Field(description="Root job of the latest step: pass it to GET mesh-job.")
    message: str = Field(description="Why the last step failed; empty otherwise.")
    migratedNamespaces: list[str]
    pendingNamespaces: list[str]


class MeshUpgradeDocument(DocumentModel):
    kind: Literal["MeshUpgrade"] = "MeshUpgrade"
    apiVersion: Literal["v1"] = "v1"
    metadata: UpgradeMetadata
    spec: UpgradeSpec
    status: UpgradeStatus


class MeshUpgradeList(DocumentModel):
    """``GET /v1/{project_id}/mesh-upgrade`` (a meshup extension): tasks newest first."""

    apiVersion: Literal["v1"] = "v1"
    kind: Literal["MeshUpgradeList"] = "MeshUpgradeList"
    items: list[MeshUpgradeDocument]
    nextMarker: str | None = Field(
        None, description="Present when more tasks follow: pass it as ?marker= for the next page."
    )


class TaskListQuery(RequestModel):
    meshId: MeshId | None = None
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    marker: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)] | None = None


# --- the mapping ----------------------------------------------------------------------------------


def _current_step(model: CurrentStepModel) -> CurrentStep:
    return CurrentStep(model.step, tuple(model.namespaces or ()))


def parse_create(body: Any) -> UpgradeCreate:
    wire = validate(MeshUpgradeCreateBody, body)
    spec = wire.spec
    return UpgradeCreate(
        name=wire.metadata.name,
        mesh_id=spec.meshId,
        strategy=spec.upgradeStrategy,
        target_version=spec.targetVersion,
        target_type=spec.targetType,
        current_step=_current_step(spec.currentStep),
    )


def parse_change(body: Any) -> UpgradeChange:
    wire = validate(MeshUpgradeUpdateBody, body)
    spec = wire.spec
    return UpgradeChange(
        current_step=_current_step(spec.currentStep),
        name=wire.metadata.name if wire.metadata is not None else None,
        mesh_id=spec.meshId,
        strategy=spec.upgradeStrategy,
        target_version=spec.targetVersion,
        target_type=spec.targetType,
    )


def parse_list_query(params: dict[str, str]) -> TaskQuery:
    """The list's query string (``meshId``, ``limit``, ``marker``); other parameters are ignored."""
    values: dict[str, Any] = {k: v for k, v in params.items() if k in ("meshId", "limit", "marker")}
    if "limit" in values:
        text = values["limit"]
        values["limit"] = int(text) if text.isdigit() and len(text) <= 6 else text
    wire = validate(TaskListQuery, values)
    return TaskQuery(mesh_id=wire.meshId, limit=wire.limit, marker=wire.marker)


def render_list(page: TaskPage) -> dict[str, Any]:
    document = MeshUpgradeList.model_construct(
        items=[_document(task) for task in page.tasks], nextMarker=page.next_marker
    )
    return document.model_dump(mode="json", exclude_none=True)


def render_task(task: UpgradeTask) -> dict[str, Any]:
    return _document(task).model_dump(mode="json", exclude_none=True)


def _document(task: UpgradeTask) -> MeshUpgradeDocument:
    state = task.state
    current: dict[str, Any] = {"step": task.step}
    if task.step_namespaces:
        current["namespaces"] = list(task.step_namespaces)
    return construct(
        MeshUpgradeDocument,
        {
            "metadata": {"name": task.name, "uid": task.id, "creationTimestamp": rfc3339(task.created_at)},
            "spec": {
                "meshId": task.mesh_id,
                "upgradeStrategy": Strategy(task.strategy),
                "targetVersion": task.target_version,
                "targetType": TargetType(task.target_type),
                "currentStep": current,
            },
            "status": {
                "phase": state.phase,
                "step": task.step,
                "jobId": task.job_id or "",
                "message": task.message,
                "migratedNamespaces": list(state.migrated),
                "pendingNamespaces": list(state.pending),
            },
        },
    )
