"""The mesh as the domain sees it: its phase, clusters, tags and the rules on them. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

DEFAULT_ENTERPRISE_PROJECT = "0"


class MeshPhase(StrEnum):
    CREATING = "Creating"
    RUNNING = "Running"
    CREATE_FAILED = "CreateFailed"
    DELETING = "Deleting"
    DELETE_FAILED = "DeleteFailed"
    UPGRADING = "Upgrading"
    UPGRADE_FAILED = "UpgradeFailed"
    ROLLING_BACK = "RollingBack"
    ROLLBACK_FAILED = "RollbackFailed"

    @property
    def busy(self) -> bool:
        """A job of the mesh is running: no delete, no new task."""
        return self in (MeshPhase.CREATING, MeshPhase.DELETING, MeshPhase.UPGRADING, MeshPhase.ROLLING_BACK)


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class MeshCluster:
    """One cluster of a mesh as the wire's ``extendParams.clusters[]`` gives it.

    ``details`` keeps the installation settings (``installation``, ``injection``, …) as sent, so
    they render back unchanged; meshup itself reads only the id.
    """

    cluster_id: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Mesh:
    id: str
    account_id: str
    project_id: str
    name: str
    type: str
    version: str
    enterprise_project_id: str
    tags: tuple[Tag, ...]
    clusters: tuple[MeshCluster, ...]
    phase: MeshPhase
    reason: str
    created_at: datetime
    updated_at: datetime
    ipv6: bool = False
    config: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    job_id: str | None = None  # latest CreateMesh/DeleteMesh job
    deleted_at: datetime | None = None

    @property
    def cluster_ids(self) -> list[str]:
        return [cluster.cluster_id for cluster in self.clusters]

    @property
    def live(self) -> bool:
        return self.deleted_at is None

    @property
    def tag_pairs(self) -> list[tuple[str, str]]:
        return [(tag.key, tag.value) for tag in self.tags]


@dataclass(frozen=True, slots=True)
class MeshCreate:
    """What a create request asks for, parsed and checked for shape (``meshes.schemas``)."""

    name: str
    type: str
    version: str
    enterprise_project_id: str
    tags: tuple[Tag, ...]
    clusters: tuple[MeshCluster, ...]
    ipv6: bool = False
    config: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def cluster_ids(self) -> list[str]:
        return [cluster.cluster_id for cluster in self.clusters]
