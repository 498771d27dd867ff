"""Phase derivation and rendering of job trees."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshup.jobs.model import JobNode, Phase, WireNode, derive, render
from meshup.jobs.schemas import JobMetadata, JobSpec, JobStatus, MeshJob
from meshup.timefmt import rfc3339

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


def wire(node: JobNode) -> WireNode:
    """A node as the store hands it to the renderer: times already wire strings."""
    return WireNode(
        id=node.id,
        parent_id=node.parent_id,
        position=node.position,
        type=node.type,
        target=node.target,
        phase=node.phase.value,
        reason=node.reason,
        created=rfc3339(node.created_at),
        updated=rfc3339(node.updated_at),
        started=rfc3339(node.started_at),
        completed=rfc3339(node.completed_at),
    )


def test_render_shape_and_order() -> None:
    root = leaf("root", Phase.RUNNING, parent=None, start=1)
    root.type = "ControlPlaneUpgrade"
    nodes = [
        root,
        leaf("second", Phase.INITIALIZING, position=1),
        leaf("first", Phase.SUCCESS, position=0, start=1, end=2),
    ]
    document = render([wire(node) for node in nodes], "root")
    assert document is not None
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


def test_render_of_a_job_not_in_the_rows_is_none() -> None:
    assert render([wire(leaf("a", Phase.SUCCESS, parent=None))], "b") is None


# -- the hand-written renderer against the pydantic wire model ------------------------------------


@dataclass
class Tree:
    type: str
    target: str
    phase: Phase
    reason: str
    times: tuple[datetime, datetime, datetime | None, datetime | None]
    children: list[Tree] = field(default_factory=list)


odd_text = st.text(max_size=12) | st.sampled_from(
    ["", " ", "\u0000", '\n\t"\\', "\u2028", "ß✓😀", "</script>"]
)
instants = st.datetimes(timezones=st.just(UTC))
trees = st.recursive(
    st.builds(
        Tree,
        type=odd_text,
        target=odd_text,
        phase=st.sampled_from(list(Phase)),
        reason=odd_text,
        times=st.tuples(instants, instants, st.none() | instants, st.none() | instants),
    ),
    lambda children: st.builds(
        Tree,
        type=odd_text,
        target=odd_text,
        phase=st.sampled_from(list(Phase)),
        reason=odd_text,
        times=st.tuples(instants, instants, st.none() | instants, st.none() | instants),
        children=st.lists(children, max_size=5),
    ),
    max_leaves=25,
)


def pydantic_model(tree: Tree, uid: str, ids: dict[int, str]) -> MeshJob:
    created, updated, started, completed = tree.times
    return MeshJob(
        kind="Job",
        apiVersion="v3",
        metadata=JobMetadata(uid=uid, creationTimestamp=rfc3339(created), updateTimestamp=rfc3339(updated)),
        spec=JobSpec(
            type=tree.type,
            target=tree.target or None,
            subjobs=[pydantic_model(child, ids[id(child)], ids) for child in tree.children],
        ),
        status=JobStatus(
            phase=tree.phase.value,
            reason=tree.reason,
            startTime=rfc3339(started),
            completionTime=rfc3339(completed),
        ),
    )


@settings(max_examples=300, deadline=None)
@given(trees, st.data())
def test_renderer_writes_the_bytes_of_the_pydantic_model(tree: Tree, data: st.DataObject) -> None:
    # Flatten into stored rows: odd but unique ids, sibling positions with gaps, rows in any order.
    ids: dict[int, str] = {}
    rows: list[WireNode] = []

    def flatten(node: Tree, parent: str | None, position: int) -> None:
        node_id = f"{len(rows)}{data.draw(odd_text)}"
        ids[id(node)] = node_id
        created, updated, started, completed = node.times
        rows.append(
            WireNode(
                node_id,
                parent,
                position,
                node.type,
                node.target,
                node.phase.value,
                node.reason,
                rfc3339(created),
                rfc3339(updated),
                rfc3339(started),
                rfc3339(completed),
            )
        )
        gaps = data.draw(
            st.lists(st.integers(1, 3), min_size=len(node.children), max_size=len(node.children))
        )
        for child, gap in zip(node.children, gaps, strict=True):
            position += gap
            flatten(child, node_id, position)

    flatten(tree, None, 0)
    shuffled = data.draw(st.permutations(rows))

    def subtrees(node: Tree) -> list[Tree]:
        return [node, *(sub for child in node.children for sub in subtrees(child))]

    asked = data.draw(st.sampled_from(subtrees(tree)))
    expected = pydantic_model(asked, ids[id(asked)], ids).model_dump_json(exclude_none=True).encode()
    assert orjson.dumps(render(shuffled, ids[id(asked)])) == expected
