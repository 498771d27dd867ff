"""The job tree as a terminal shows it, and the plain lines a log gets instead."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console

from meshup.client.api import Api
from meshup.client.credentials import AccessKey, Profile
from meshup.client.tree import changed_lines, elapsed, job_tree, nodes
from meshup.client.watch import summary, watch

NOW = datetime(2026, 11, 27, 10, 5, 0, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def node(
    uid: str,
    kind: str,
    phase: str,
    *,
    target: str = "",
    reason: str = "",
    start: str = "",
    end: str = "",
    children: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "subjobs": children or []}
    if target:
        spec["target"] = target
    return {
        "kind": "Job",
        "apiVersion": "v3",
        "metadata": {"uid": uid},
        "spec": spec,
        "status": {"phase": phase, "reason": reason, "startTime": start, "completionTime": end},
    }


def upgrade(wait_phase: str, root_phase: str, reason: str = "") -> dict[str, Any]:
    return node(
        "root",
        "ControlPlaneUpgrade",
        root_phase,
        start="2026-11-27T10:00:00Z",
        end="2026-11-27T10:04:00Z" if root_phase in ("Success", "Failed") else "",
        reason=f"WaitControlPlaneReady cluster c1: {reason}" if reason else "",
        children=[
            node(
                "install",
                "InstallControlPlane",
                "Success",
                target="cluster c1",
                start="2026-11-27T10:00:00Z",
                end="2026-11-27T10:00:07Z",
            ),
            node(
                "wait",
                "WaitControlPlaneReady",
                wait_phase,
                target="cluster c1",
                reason=reason,
                start="2026-11-27T10:00:07Z" if wait_phase != "Initializing" else "",
                end="2026-11-27T10:04:00Z" if wait_phase in ("Success", "Failed") else "",
            ),
            node("gateways", "InstallGateways", "Initializing", target="cluster c1"),
        ],
    )


def render(doc: dict[str, Any]) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system="truecolor")
    console.print(job_tree(doc, NOW))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in output  # coloured on a terminal
    plain = Console(file=io.StringIO(), width=120)
    plain.print(job_tree(doc, NOW))
    return str(plain.file.getvalue())  # type: ignore[attr-defined]


def test_a_running_tree_shows_symbols_targets_and_elapsed_times() -> None:
    lines = render(upgrade("Running", "Running")).splitlines()
    assert lines == [
        "● ControlPlaneUpgrade  Running  5m00s",
        "├── ✔ InstallControlPlane  cluster c1  7s",
        "├── ● WaitControlPlaneReady  cluster c1  4m53s",
        "└── ○ InstallGateways  cluster c1",
    ]


def test_a_failed_node_shows_its_reason() -> None:
    lines = render(upgrade("Failed", "Failed", "istiod not ready after 300s")).splitlines()
    assert (
        lines[0]
        == "✘ ControlPlaneUpgrade  Failed  4m00s  WaitControlPlaneReady cluster c1: istiod not ready after 300s"
    )
    assert lines[2] == "├── ✘ WaitControlPlaneReady  cluster c1  3m53s  istiod not ready after 300s"


def test_nested_children_are_indented_under_their_parent() -> None:
    doc = node(
        "r",
        "DataPlaneUpgrade",
        "Running",
        children=[
            node("m1", "MigrateNamespace", "Running", children=[node("x", "RelabelNamespace", "Success")]),
            node(
                "m2",
                "MigrateNamespace",
                "Initializing",
                children=[node("y", "VerifyProxies", "Initializing")],
            ),
        ],
    )
    assert render(doc).splitlines() == [
        "● DataPlaneUpgrade  Running",
        "├── ● MigrateNamespace",
        "│   └── ✔ RelabelNamespace",
        "└── ○ MigrateNamespace",
        "    └── ○ VerifyProxies",
    ]
    assert [n.depth for n in nodes(doc)] == [0, 1, 2, 1, 2]


def test_elapsed_time_formats() -> None:
    [root, *_] = nodes(node("r", "T", "Running", start="2026-11-27T08:59:30Z"))
    assert elapsed(root, NOW) == "1h05m"
    [done] = nodes(node("r", "T", "Success", start="2026-11-27T10:00:00Z", end="2026-11-27T10:00:42Z"))
    assert elapsed(done, NOW) == "42s"


def test_plain_lines_show_only_changes_and_end_with_the_roots_outcome() -> None:
    seen: dict[str, tuple[str, str]] = {}
    assert changed_lines(seen, upgrade("Running", "Running")) == [
        "ControlPlaneUpgrade: Running",
        "InstallControlPlane cluster c1: Success",
        "WaitControlPlaneReady cluster c1: Running",
        "InstallGateways cluster c1: Initializing",
    ]
    assert changed_lines(seen, upgrade("Running", "Running")) == []
    assert changed_lines(seen, upgrade("Failed", "Failed", "not ready")) == [
        "WaitControlPlaneReady cluster c1: Failed - not ready",
        "ControlPlaneUpgrade: Failed - WaitControlPlaneReady cluster c1: not ready",
    ]


def test_watch_without_a_terminal_prints_lines_and_with_one_draws_the_tree() -> None:
    answers = [upgrade("Running", "Running"), upgrade("Success", "Success")]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers.pop(0) if len(answers) > 1 else answers[0])

    profile = Profile("http://127.0.0.1:1", AccessKey("AK", "SK"), "p" * 32, None, "test")
    with Api(profile, transport=httpx.MockTransport(handler)) as api:
        out = Console(file=io.StringIO(), width=100)
        final = watch(api, "root", out, timeout=5, interval=0.05)
        text = out.file.getvalue()  # type: ignore[attr-defined]
        assert text.splitlines()[-1] == "ControlPlaneUpgrade: Success"
        assert summary(final) == "job root ControlPlaneUpgrade: Success"

        answers[:] = [upgrade("Success", "Success")]
        screen = Console(file=io.StringIO(), force_terminal=True, width=100)
        watch(api, "root", screen, timeout=5, interval=0.05)
        drawn = screen.file.getvalue()  # type: ignore[attr-defined]
        assert "\x1b[?25l" in drawn  # a live display: the cursor is hidden while it draws
        assert "✔ ControlPlaneUpgrade  Success" in ANSI.sub("", drawn)
        assert "└── ○ InstallGateways" in ANSI.sub("", drawn)
