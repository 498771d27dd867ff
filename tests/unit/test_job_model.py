"""Phase derivation and rendering of job trees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshup.jobs.model import JobNode, Phase, assemble, derive, render

T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def leaf(
    node_id: str,
    phase: Phase,
    *,
    position: int = 0,
    parent: str | None = "root",
    reason: str = "",
    target: str = "",
    start: int | None = None,
    end: int | None = None,
) -> JobNode:
    started = T0 + timedelta(seconds=start) if start is not None else None
    completed = T0 + timedelta(seconds=end) if end is not None else None
    return JobNode(
        id=node_id,
        parent_id=parent,
        position=position,
        type="InstallControlPlane",
        target=target,
        phase=phase,
        reason=reason,
        created_at=T0,
        updated_at=completed or started or T0,
        started_at=started,
        completed_at=completed,
    )


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([Phase.SUCCESS, Phase.SUCCESS], Phase.SUCCESS),
        ([Phase.SUCCESS, Phase.FAILED, Phase.INITIALIZING], Phase.FAILED),
        ([Phase.FAILED, Phase.RUNNING], Phase.RUNNING),
        ([Phase.SUCCESS, Phase.INITIALIZING], Phase.RUNNING),
        ([Phase.RUNNING, Phase.INITIALIZING], Phase.RUNNING),
        ([Phase.INITIALIZING, Phase.INITIALIZING], Phase.INITIALIZING),
    ],
)
def test_parent_phase_follows_children(phases: list[Phase], expected: Phase) -> None:
    children = [leaf(f"c{i}", phase, position=i) for i, phase in enumerate(phases)]
    assert derive(children, T0).phase is expected


def test_failed_parent_names_child_target_and_cause() -> None:
    children = [
        leaf("a", Phase.SUCCESS, start=1, end=2),
        leaf("b", Phase.FAILED, target="cluster c1", reason="istiod not ready", start=2, end=5),
    ]
    derived = derive(children, T0)
    assert derived.phase is Phase.FAILED
    assert derived.reason == "InstallControlPlane cluster c1: istiod not ready"
    assert derived.started_at == T0 + timedelta(seconds=1)
    assert derived.completed_at == T0 + timedelta(seconds=5)
    assert derived.updated_at == T0 + timedelta(seconds=5)


def test_running_parent_has_no_completion_time() -> None:
    derived = derive([leaf("a", Phase.SUCCESS, start=1, end=2), leaf("b", Phase.RUNNING, start=3)], T0)
    assert derived.phase is Phase.RUNNING
    assert derived.completed_at is None
    assert derived.reason == ""


def test_derive_needs_children() -> None:
    with pytest.raises(ValueError):
        derive([], T0)


def test_render_shape_and_order() -> None:
    root = leaf("root", Phase.RUNNING, parent=None, start=1)
    root.type = "ControlPlaneUpgrade"
    nodes = assemble(
        [
            root,
            leaf("second", Phase.INITIALIZING, position=1),
            leaf("first", Phase.SUCCESS, position=0, start=1, end=2),
        ]
    )
    document = render(nodes["root"])
    assert document["kind"] == "Job" and document["apiVersion"] == "v3"
    assert [child["metadata"]["uid"] for child in document["spec"]["subjobs"]] == ["first", "second"]
    assert document["spec"]["subjobs"][1]["status"] == {
        "phase": "Initializing",
        "reason": "",
        "startTime": "",
        "completionTime": "",
    }
    assert document["spec"]["subjobs"][0]["status"]["completionTime"] == "2026-11-27T10:00:02Z"
    assert "target" not in document["spec"]
    assert document["metadata"] == {
        "uid": "root",
        "creationTimestamp": "2026-11-27T10:00:00Z",
        "updateTimestamp": "2026-11-27T10:00:01Z",
    }


phases = st.sampled_from(list(Phase))


@given(st.lists(phases, min_size=1, max_size=8))
def test_derivation_laws(child_phases: list[Phase]) -> None:
    children = [leaf(f"c{i}", phase, position=i) for i, phase in enumerate(child_phases)]
    derived = derive(children, T0)
    if all(p is Phase.SUCCESS for p in child_phases):
        assert derived.phase is Phase.SUCCESS
    if Phase.RUNNING in child_phases:
        assert derived.phase is Phase.RUNNING
    if derived.phase is Phase.FAILED:
        assert Phase.FAILED in child_phases and derived.reason
    if derived.phase is Phase.INITIALIZING:
        assert set(child_phases) == {Phase.INITIALIZING}
    assert (derived.completed_at is not None) == derived.phase.terminal
