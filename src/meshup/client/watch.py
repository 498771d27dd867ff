"""Show a job while it runs: a live tree on a terminal, one plain line per change elsewhere."""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from meshup.client.api import Api
from meshup.client.follow import follow, phase
from meshup.client.tree import changed_lines, job_tree

EXIT_SUCCESS, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2


def exit_code(doc: dict[str, Any]) -> int:
    return EXIT_SUCCESS if phase(doc) == "Success" else EXIT_FAILED


def summary(doc: dict[str, Any]) -> str:
    """``job <uid> <type>: <phase>[ - reason]`` for the final line of a wait."""
    uid = (doc.get("metadata") or {}).get("uid", "?")
    kind = (doc.get("spec") or {}).get("type", "?")
    reason = (doc.get("status") or {}).get("reason") or ""
    return f"job {uid} {kind}: {phase(doc)}" + (f" - {reason}" if reason else "")


def wait(api: Api, job_id: str, *, timeout: float | None, interval: float = 1.0) -> dict[str, Any]:
    """The job's document once it is terminal; raises WaitTimedOut."""
    last: dict[str, Any] = {}
    for doc in follow(api, job_id, interval=interval, timeout=timeout):
        last = doc
    return last


def watch(
    api: Api,
    job_id: str,
    out: Console,
    *,
    timeout: float | None,
    interval: float = 1.0,
    live: bool | None = None,
) -> dict[str, Any]:
    """Follow the job on ``out`` until it is terminal and return its last document."""
    if out.is_terminal if live is None else live:
        return _live(api, job_id, out, timeout=timeout, interval=interval)
    seen: dict[str, tuple[str, str]] = {}
    last: dict[str, Any] = {}
    for doc in follow(api, job_id, interval=interval, timeout=timeout):
        last = doc
        for line in changed_lines(seen, doc):
            out.file.write(line + "\n")
        out.file.flush()
    return last


def _live(api: Api, job_id: str, out: Console, *, timeout: float | None, interval: float) -> dict[str, Any]:
    current: dict[str, Any] = {}

    def render() -> RenderableType:
        # Called on every refresh, so the elapsed time of running nodes keeps counting.
        return job_tree(current) if current else Text(f"job {job_id}: waiting for the first answer")

    with Live(get_renderable=render, console=out, refresh_per_second=4, redirect_stdout=False) as display:
        for doc in follow(api, job_id, interval=interval, timeout=timeout):
            current.clear()
            current.update(doc)
            display.refresh()
    return current
