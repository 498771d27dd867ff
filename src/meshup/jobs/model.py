"""The job tree: phases, how a parent's state follows from its children, and the wire document.

Every node of a tree is one row; a parent's phase, reason and times are derived from its children
(``derive``) whenever a child changes, and stored, so reading a tree never recomputes anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCESS, Phase.FAILED)


@dataclass(slots=True)
class JobNode:
    id: str
    parent_id: str | None
    position: int
    type: str
    target: str
    phase: Phase
    reason: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    children: list[JobNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One node of a tree to write; ``payload`` is the engine's input for a leaf (on the root: who
    is told when the tree finishes, and whether its children run in parallel)."""

    node: JobNode
    root_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobTree:
    """A new job tree, root first, as a plan builds it and the job repository writes it."""

    jobs: tuple[NewJob, ...]

    @property
    def root_id(self) -> str:
        return self.jobs[0].node.id


class TreeBuilder:
    """Builds a :class:`JobTree` node by node: the first node added is the root; positions follow
    the order children are added to their parent."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._jobs: list[NewJob] = []
        self._positions: dict[str | None, int] = {}

    def add(self, parent: str | None, job_type: str, target: str, payload: dict[str, Any]) -> str:
        node_id = str(uuid.uuid4())
        root_id = self._jobs[0].root_id if self._jobs else node_id
        position = self._positions.get(parent, 0)
        self._positions[parent] = position + 1
        node = JobNode(
            node_id,
            parent,
            position,
            job_type,
            target,
            Phase.INITIALIZING,
            "",
            self.now,
            self.now,
            None,
            None,
        )
        self._jobs.append(NewJob(node, root_id, payload))
        return node_id

    def tree(self) -> JobTree:
        return JobTree(tuple(self._jobs))


@dataclass(frozen=True, slots=True)
class Derived:
    """A parent's state as its children determine it."""

    phase: Phase
    reason: str
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


def failure_reason(child: JobNode) -> str:
    """A parent names the child that failed, its target, and the child's own reason."""
    label = f"{child.type} {child.target}" if child.target else child.type
    return f"{label}: {child.reason}" if child.reason else f"{label} failed"


def derive(children: Sequence[JobNode], created_at: datetime) -> Derived:
    """All Success → Success; any Failed with nothing still running → Failed; else Running once any
    child has started; else Initializing. Times follow: start = earliest child start, completion =
    latest child completion (only once terminal), update = latest update in the subtree."""
    if not children:
        raise ValueError("a parent needs at least one child")
    phases = [child.phase for child in children]
    updated_at = max([created_at, *(child.updated_at for child in children)])
    starts = [child.started_at for child in children if child.started_at is not None]
    started_at = min(starts) if starts else None
    reason = ""
    if all(phase is Phase.SUCCESS for phase in phases):
        phase = Phase.SUCCESS
    elif Phase.FAILED in phases and Phase.RUNNING not in phases:
        phase = Phase.FAILED
        reason = failure_reason(next(child for child in children if child.phase is Phase.FAILED))
    elif any(phase is not Phase.INITIALIZING for phase in phases):
        phase = Phase.RUNNING
    else:
        phase = Phase.INITIALIZING
    completed_at = None
    if phase.terminal:
        ends = [child.completed_at for child in children if child.completed_at is not None]
        completed_at = max(ends) if ends else updated_at
    return Derived(phase, reason, started_at, completed_at, updated_at)


def assemble(nodes: Iterable[JobNode]) -> dict[str, JobNode]:
    """Link nodes of one tree (any order) into parents' ``children`` lists, ordered by position."""
    by_id = {node.id: node for node in nodes}
    for node in by_id.values():
        node.children = []
    for node in sorted(by_id.values(), key=lambda n: n.position):
        if node.parent_id is not None:
            parent = by_id.get(node.parent_id)
            if parent is not None:
                parent.children.append(node)
    return by_id


@dataclass(slots=True)  # not frozen: built for every node of every GET, and never changed
class WireNode:
    """A stored job node with its timestamps already as wire strings (RFC 3339 or "")."""

    id: str
    parent_id: str | None
    position: int
    type: str
    target: str
    phase: str
    reason: str
    created: str
    updated: str
    started: str
    completed: str


def job_document(node: WireNode, subjobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The MeshJob wire document of one node (asm-api.md §4): the one place that shapes it."""
    spec: dict[str, Any] = {"type": node.type}
    if node.target:
        spec["target"] = node.target
    spec["subjobs"] = subjobs
    return {
        "kind": "Job",
        "apiVersion": "v3",
        "metadata": {"uid": node.id, "creationTimestamp": node.created, "updateTimestamp": node.updated},
        "spec": spec,
        "status": {
            "phase": node.phase,
            "reason": node.reason,
            "startTime": node.started,
            "completionTime": node.completed,
        },
    }


def render(nodes: Iterable[WireNode], job_id: str) -> dict[str, Any] | None:
    """The MeshJob document of ``job_id`` and its subtree, from the flat rows of its tree (any
    order); None if the job is not among them.

    Hand-written dicts for orjson because every poll renders a tree: a test holds the bytes to the
    pydantic model's rendering (``jobs.schemas.MeshJob``) for random trees.
    """
    children: dict[str | None, list[WireNode]] = {}
    target: WireNode | None = None
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
        if node.id == job_id:
            target = node
    if target is None:
        return None

    def build(node: WireNode) -> dict[str, Any]:
        kids = children.get(node.id)
        if not kids:
            return job_document(node, [])
        kids.sort(key=lambda child: child.position)
        return job_document(node, [build(child) for child in kids])

    return build(target)
