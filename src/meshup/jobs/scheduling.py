"""Which leaves of a job tree may run now, and how a change to one node moves its ancestors.

Pure functions over assembled trees (``jobs.model.assemble``). A parent runs its children one
after another unless it is marked parallel; once any leaf has failed nothing new starts in the
tree, so a failed step stops as soon as what is already running has finished.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshup.jobs.model import JobNode, Phase, derive


def _has_failure(node: JobNode) -> bool:
    if not node.children:
        return node.phase is Phase.FAILED
    return any(_has_failure(child) for child in node.children)


def runnable_leaves(root: JobNode, parallel: frozenset[str] = frozenset()) -> list[JobNode]:
    """Initializing leaves whose turn has come (in tree order)."""
    if _has_failure(root):
        return []
    found: list[JobNode] = []

    def visit(node: JobNode) -> None:
        if not node.children:
            if node.phase is Phase.INITIALIZING:
                found.append(node)
            return
        if node.id in parallel:
            for child in node.children:
                visit(child)
            return
        for child in node.children:
            if child.phase is Phase.SUCCESS:
                continue
            visit(child)
            return

    visit(root)
    return found


def rederive_ancestors(nodes: Mapping[str, JobNode], node_id: str) -> list[JobNode]:
    """Recompute every ancestor of ``node_id`` from its children; returns those that changed."""
    changed: list[JobNode] = []
    node = nodes.get(node_id)
    while node is not None and node.parent_id is not None:
        parent = nodes.get(node.parent_id)
        if parent is None or not parent.children:
            break
        derived = derive(parent.children, parent.created_at)
        before = (parent.phase, parent.reason, parent.started_at, parent.completed_at, parent.updated_at)
        after = (derived.phase, derived.reason, derived.started_at, derived.completed_at, derived.updated_at)
        if before != after:
            parent.phase, parent.reason = derived.phase, derived.reason
            parent.started_at, parent.completed_at = derived.started_at, derived.completed_at
            parent.updated_at = derived.updated_at
            changed.append(parent)
        node = parent
    return changed


def root_of(nodes: Mapping[str, JobNode], node_id: str) -> JobNode:
    node = nodes[node_id]
    while node.parent_id is not None and node.parent_id in nodes:
        node = nodes[node.parent_id]
    return node
