"""MeshUpgrade on the wire: request parsing with precise 400 messages, and rendering."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from meshup.errors import InvalidRequest
from meshup.timefmt import rfc3339
from meshup.upgrades.model import Step

STRATEGIES = ("Canary",)
TARGET_TYPES = ("InCluster",)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$|^[a-z]$")


@dataclass(frozen=True, slots=True)
class CurrentStep:
    step: Step
    namespaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """Fields given in a POST/PUT body; None where a PUT left them out."""

    name: str | None
    mesh_id: str | None
    strategy: str | None
    target_version: str | None
    target_type: str | None
    current_step: CurrentStep | None


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: must be an object")
    return value


def _string(value: Any, path: str, *, max_length: int = 128) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{path}: must be a non-empty string")
    if len(value) > max_length:
        raise InvalidRequest(f"{path}: at most {max_length} characters")
    if "\x00" in value:  # never part of a valid value, and PostgreSQL refuses it in a query
        raise InvalidRequest(f"{path}: must not contain NUL characters")
    return value


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    text = _string(value, path)
    if text not in choices:
        raise InvalidRequest(f"{path}: must be one of {', '.join(choices)}")
    return text


def _current_step(value: Any) -> CurrentStep:
    data = _object(value, "spec.currentStep")
    if data.get("step") is None:
        raise InvalidRequest("spec.currentStep.step: required")
    step_text = _choice(data["step"], "spec.currentStep.step", tuple(s.value for s in Step))
    namespaces_value = data.get("namespaces")
    namespaces: list[str] = []
    if namespaces_value is not None:
        if not isinstance(namespaces_value, list) or len(namespaces_value) > 1000:
            raise InvalidRequest(
                "spec.currentStep.namespaces: must be a list of at most 1000 namespace names"
            )
        for index, item in enumerate(namespaces_value):
            namespaces.append(_string(item, f"spec.currentStep.namespaces[{index}]", max_length=63))
    return CurrentStep(Step(step_text), tuple(namespaces))


def parse_upgrade(body: Any, *, create: bool) -> UpgradeRequest:
    """A MeshUpgrade document; on create every spec field is mandatory (asm-api.md §5)."""
    data = _object(body, "body")
    kind = data.get("kind")
    if kind is not None and kind != "MeshUpgrade":
        raise InvalidRequest("kind: must be MeshUpgrade")
    api_version = data.get("apiVersion")
    if api_version is not None and api_version != "v1":
        raise InvalidRequest("apiVersion: must be v1")
    metadata = _object(data.get("metadata"), "metadata") if create or data.get("metadata") is not None else {}
    name = metadata.get("name")
    if create and name is None:
        raise InvalidRequest("metadata.name: required")
    if name is not None:
        name = _string(name, "metadata.name", max_length=64)
        if create and not _NAME.match(name):
            raise InvalidRequest(
                "metadata.name: 1-64 lowercase letters, digits and '-', starting with a letter, not ending with '-'"
            )
    if data.get("spec") is None:
        raise InvalidRequest("spec: required")
    spec = _object(data["spec"], "spec")
    fields: dict[str, Any] = {}
    for key, path in (
        ("meshId", "spec.meshId"),
        ("upgradeStrategy", "spec.upgradeStrategy"),
        ("targetVersion", "spec.targetVersion"),
        ("targetType", "spec.targetType"),
        ("currentStep", "spec.currentStep"),
    ):
        if spec.get(key) is None and create:
            raise InvalidRequest(f"{path}: required")
        fields[key] = spec.get(key)
    return UpgradeRequest(
        name=name,
        mesh_id=_string(fields["meshId"], "spec.meshId", max_length=64)
        if fields["meshId"] is not None
        else None,
        strategy=_choice(fields["upgradeStrategy"], "spec.upgradeStrategy", STRATEGIES)
        if fields["upgradeStrategy"] is not None
        else None,
        target_version=_string(fields["targetVersion"], "spec.targetVersion", max_length=32)
        if fields["targetVersion"] is not None
        else None,
        target_type=_choice(fields["targetType"], "spec.targetType", TARGET_TYPES)
        if fields["targetType"] is not None
        else None,
        current_step=_current_step(fields["currentStep"]) if fields["currentStep"] is not None else None,
    )


def render_task(row: Any) -> dict[str, Any]:
    namespaces = list(row.namespaces or [])
    migrated = list(row.migrated or [])
    current = dict(row.current_step or {})
    current_step: dict[str, Any] = {"step": current.get("step")}
    if current.get("namespaces"):
        current_step["namespaces"] = list(current["namespaces"])
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": row.name, "uid": row.id, "creationTimestamp": rfc3339(row.created_at)},
        "spec": {
            "meshId": row.mesh_id,
            "upgradeStrategy": row.strategy,
            "targetVersion": row.target_version,
            "targetType": row.target_type,
            "currentStep": current_step,
        },
        "status": {
            "phase": row.phase,
            "step": row.step or "",
            "jobId": row.job_id or "",
            "message": row.message or "",
            "migratedNamespaces": migrated,
            "pendingNamespaces": [ns for ns in namespaces if ns not in migrated],
        },
    }


class CurrentStepModel(BaseModel):
    step: str = Field(description="PreCheck, ControlPlaneUpgrade, DataPlaneUpgrade, Complete or Rollback.")
    namespaces: list[str] | None = Field(
        None, description="DataPlaneUpgrade only: namespaces to migrate now."
    )


class UpgradeSpecModel(BaseModel):
    meshId: str
    upgradeStrategy: str = Field(description="Canary")
    targetVersion: str
    targetType: str = Field(description="InCluster")
    currentStep: CurrentStepModel


class UpgradeMetadataModel(BaseModel):
    name: str
    uid: str | None = None
    creationTimestamp: str | None = None


class UpgradeStatusModel(BaseModel):
    phase: str = Field(description="Running, Waiting, Failed, Completed or RolledBack.")
    step: str
    jobId: str = Field(description="Root job of the latest step: pass it to GET mesh-job.")
    message: str
    migratedNamespaces: list[str]
    pendingNamespaces: list[str]


class MeshUpgradeModel(BaseModel):
    kind: str = "MeshUpgrade"
    apiVersion: str = "v1"
    metadata: UpgradeMetadataModel
    spec: UpgradeSpecModel
    status: UpgradeStatusModel | None = None
