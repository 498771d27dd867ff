"""A mesh job as a tree of lines: status symbol, type, target, elapsed time, and why it failed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from rich.tree import Tree

# (symbol, style) per phase; an unknown phase is shown as it is named, with "?".
SYMBOLS: dict[str, tuple[str, str]] = {
    "Initializing": ("○", "dim"),
    "Running": ("●", "yellow"),
    "Success": ("✔", "green"),
    "Failed": ("✘", "bold red"),
}


@dataclass(frozen=True, slots=True)
class Node:
    uid: str
    type: str
    target: str
    phase: str
    reason: str
    started: datetime | None
    completed: datetime | None
    depth: int


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _node(doc: dict[str, Any], depth: int) -> Node:
    metadata, spec, status = (doc.get(key) or {} for key in ("metadata", "spec", "status"))
    return Node(
        uid=str(metadata.get("uid") or ""),
        type=str(spec.get("type") or "?"),
        target=str(spec.get("target") or ""),
        phase=str(status.get("phase") or "?"),
        reason=str(status.get("reason") or ""),
        started=_time(status.get("startTime")),
        completed=_time(status.get("completionTime")),
        depth=depth,
    )


def nodes(doc: dict[str, Any], depth: int = 0) -> Iterator[Node]:
    """Every node of a job document, parents before children, children in execution order."""
    yield _node(doc, depth)
    for child in (doc.get("spec") or {}).get("subjobs") or []:
        if isinstance(child, dict):
            yield from nodes(child, depth + 1)


def elapsed(node: Node, now: datetime) -> str:
    """``12s``, ``3m05s``, ``1h02m``; empty before the node started."""
    if node.started is None:
        return ""
    seconds = max(0, int(((node.completed or now) - node.started).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def label(node: Node, now: datetime, *, root: bool = False) -> Text:
    symbol, style = SYMBOLS.get(node.phase, ("?", "magenta"))
    text = Text.assemble((symbol, style), " ", (node.type, "bold"))
    if node.target:
        text.append(f"  {node.target}", style="cyan")
    if root:
        text.append(f"  {node.phase}", style=style)
    took = elapsed(node, now)
    if took:
        text.append(f"  {took}", style="dim")
    if node.phase == "Failed" and node.reason:
        text.append(f"  {node.reason}", style="red")
    return text


def job_tree(doc: dict[str, Any], now: datetime | None = None) -> Tree:
    """One line per node, indented under its parent."""
    now = now or datetime.now(UTC)
    all_nodes = list(nodes(doc))
    tree = Tree(label(all_nodes[0], now, root=True), guide_style="dim")
    stack: list[Tree] = [tree]
    for node in all_nodes[1:]:
        del stack[node.depth :]
        stack.append(stack[-1].add(label(node, now)))
    return tree


def plain_line(node: Node) -> str:
    """One line for logs: type, target, phase and reason, in plain ASCII punctuation."""
    where = f" {node.target}" if node.target else ""
    why = f" - {node.reason}" if node.reason else ""
    return f"{node.type}{where}: {node.phase}{why}"


def changed_lines(seen: dict[str, tuple[str, str]], doc: dict[str, Any], depth: int = 0) -> list[str]:
    """Lines of the nodes whose phase or reason differ from ``seen`` (which is updated).

    A node that starts is shown before its children, a node that ends after them, so a log
    reads top-down as work begins and the root's outcome is the last line.
    """
    node = _node(doc, depth)
    key = node.uid or f"{depth}:{node.type}:{node.target}"
    state = (node.phase, node.reason)
    own = [] if seen.get(key) == state else [plain_line(node)]
    seen[key] = state
    below = [
        line
        for child in (doc.get("spec") or {}).get("subjobs") or []
        if isinstance(child, dict)
        for line in changed_lines(seen, child, depth + 1)
    ]
    return below + own if node.phase in ("Success", "Failed") else own + below
