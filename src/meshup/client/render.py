"""Documents on stdout: rich tables (the default), JSON or YAML exactly as the server sent them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import yaml
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

from meshup.client.tree import job_tree

FORMATS = ("table", "json", "yaml")


def console(*, stderr: bool = False) -> Console:
    """A console that keeps long ids whole when output goes to a pipe or file."""
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, highlight=False, width=200)
    return out


def emit(doc: Any, output: str, table: Callable[[Any], RenderableType]) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    elif output == "yaml":
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    else:
        console().print(table(doc))


def _get(doc: dict[str, Any], *path: str) -> Any:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) or "-"
    return str(value)


def _details(rows: list[tuple[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, _text(value))
    return table


def _clusters(mesh: dict[str, Any]) -> list[str]:
    clusters = _get(mesh, "spec", "extendParams", "clusters") or []
    return [str(c.get("clusterID")) for c in clusters if isinstance(c, dict)]


def _tags(mesh: dict[str, Any]) -> list[str]:
    tags = _get(mesh, "spec", "tags") or []
    return [f"{t.get('key')}={t.get('value', '')}" for t in tags if isinstance(t, dict)]


def mesh_list_table(doc: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("NAME", "ID", "VERSION", "PHASE", "CLUSTERS", "CREATED"):
        table.add_column(column, no_wrap=column in ("ID", "CREATED"))
    for mesh in doc.get("items") or []:
        table.add_row(
            _text(_get(mesh, "metadata", "name")),
            _text(_get(mesh, "metadata", "uid")),
            _text(_get(mesh, "spec", "version")),
            _text(_get(mesh, "status", "phase")),
            _text(_clusters(mesh)),
            _text(_get(mesh, "metadata", "creationTimestamp")),
        )
    return table


def mesh_table(mesh: dict[str, Any]) -> Table:
    return _details(
        [
            ("Name", _get(mesh, "metadata", "name")),
            ("ID", _get(mesh, "metadata", "uid")),
            ("Type", _get(mesh, "spec", "type")),
            ("Version", _get(mesh, "spec", "version")),
            ("Phase", _get(mesh, "status", "phase")),
            ("Reason", _get(mesh, "status", "reason")),
            ("Clusters", _clusters(mesh)),
            ("Tags", _tags(mesh)),
            ("Enterprise project", _get(mesh, "spec", "extendParams", "enterpriseProjectId")),
            ("Job", _get(mesh, "status", "jobId")),
            ("Created", _get(mesh, "metadata", "creationTimestamp")),
        ]
    )


def upgrade_list_table(doc: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("NAME", "ID", "MESH", "TARGET", "STEP", "PHASE", "CREATED"):
        table.add_column(column, no_wrap=column in ("ID", "MESH", "CREATED"))
    for task in doc.get("items") or []:
        table.add_row(
            _text(_get(task, "metadata", "name")),
            _text(_get(task, "metadata", "uid")),
            _text(_get(task, "spec", "meshId")),
            _text(_get(task, "spec", "targetVersion")),
            _text(_get(task, "status", "step")),
            _text(_get(task, "status", "phase")),
            _text(_get(task, "metadata", "creationTimestamp")),
        )
    return table


def upgrade_table(task: dict[str, Any]) -> Table:
    return _details(
        [
            ("Name", _get(task, "metadata", "name")),
            ("ID", _get(task, "metadata", "uid")),
            ("Mesh", _get(task, "spec", "meshId")),
            ("Target version", _get(task, "spec", "targetVersion")),
            ("Strategy", _get(task, "spec", "upgradeStrategy")),
            ("Step", _get(task, "status", "step")),
            ("Phase", _get(task, "status", "phase")),
            ("Job", _get(task, "status", "jobId")),
            ("Message", _get(task, "status", "message")),
            ("Migrated namespaces", _get(task, "status", "migratedNamespaces")),
            ("Pending namespaces", _get(task, "status", "pendingNamespaces")),
            ("Created", _get(task, "metadata", "creationTimestamp")),
        ]
    )


def job_table(job: dict[str, Any]) -> RenderableType:
    return job_tree(job)


def _clock(ms: Any) -> str:
    """A trace's ``time`` (ms since the epoch) as RFC 3339 UTC."""
    from datetime import UTC, datetime

    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trace_list_table(doc: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    for column in ("TIME", "TRACE", "RATING", "CODE", "USER", "RESOURCE", "SOURCE IP"):
        table.add_column(column, no_wrap=column in ("TIME", "TRACE"))
    for trace in doc.get("traces") or []:
        resource = " ".join(
            str(v)
            for v in (trace.get("resource_type"), trace.get("resource_name") or trace.get("resource_id"))
            if v
        )
        table.add_row(
            _clock(trace.get("time")),
            _text(trace.get("trace_name")),
            _text(trace.get("trace_rating")),
            _text(trace.get("code")),
            _text(_get(trace, "user", "name")),
            _text(resource),
            _text(trace.get("source_ip")),
        )
    return table
