"""The canary upgrade step state machine: every allowed and refused transition."""

from __future__ import annotations

import pytest

from meshup.errors import Conflict, InvalidRequest
from meshup.upgrades.model import (
    Step,
    StepRun,
    TaskPhase,
    TaskState,
    allowed_next,
    check_start,
    finished,
    follow_injection,
    started,
)

NAMESPACES = ("default", "shop", "payments")


def run(state: TaskState, step: Step, *, success: bool, migrated: tuple[str, ...] = ()) -> TaskState:
    namespaces = check_start(state, step, migrated if step is Step.DATA_PLANE else ())
    job = f"job-{len(state.history)}"
    state = started(state, step, job)
    return finished(state, job, success, namespaces if success or migrated else ())


def fresh() -> TaskState:
    return TaskState(TaskPhase.WAITING, NAMESPACES)


def test_the_happy_path() -> None:
    state = fresh()
    assert allowed_next(state) == [Step.PRECHECK]
    state = run(state, Step.PRECHECK, success=True)
    assert allowed_next(state) == [Step.PRECHECK, Step.CONTROL_PLANE]
    state = run(state, Step.CONTROL_PLANE, success=True)
    assert allowed_next(state) == [Step.DATA_PLANE, Step.ROLLBACK]
    state = run(state, Step.DATA_PLANE, success=True, migrated=("default",))
    assert state.migrated == ("default",) and state.pending == ("shop", "payments")
    state = run(state, Step.DATA_PLANE, success=True, migrated=("shop", "payments"))
    assert state.pending == ()
    assert allowed_next(state) == [Step.COMPLETE, Step.ROLLBACK]
    state = run(state, Step.COMPLETE, success=True)
    assert state.phase is TaskPhase.COMPLETED
    assert allowed_next(state) == []
    assert state.deletable


def test_data_plane_without_namespaces_migrates_all_pending() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    assert check_start(state, Step.DATA_PLANE, ()) == NAMESPACES


@pytest.mark.parametrize("step", [Step.CONTROL_PLANE, Step.DATA_PLANE, Step.COMPLETE, Step.ROLLBACK])
def test_only_precheck_can_come_first(step: Step) -> None:
    with pytest.raises(Conflict, match="allowed now: PreCheck"):
        check_start(fresh(), step, ())


def test_control_plane_needs_a_successful_precheck() -> None:
    state = run(fresh(), Step.PRECHECK, success=False)
    assert state.phase is TaskPhase.FAILED
    with pytest.raises(Conflict):
        check_start(state, Step.CONTROL_PLANE, ())
    state = run(state, Step.PRECHECK, success=True)
    check_start(state, Step.CONTROL_PLANE, ())


def test_precheck_is_not_repeatable_once_something_changed() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    with pytest.raises(Conflict, match="PreCheck is not allowed"):
        check_start(state, Step.PRECHECK, ())


def test_every_put_is_409_while_a_step_runs() -> None:
    state = started(fresh(), Step.PRECHECK, "j")
    for step in Step:
        with pytest.raises(Conflict, match="still running"):
            check_start(state, step, ())


def test_failed_control_plane_may_be_retried_or_rolled_back() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=False)
    assert allowed_next(state) == [Step.CONTROL_PLANE, Step.ROLLBACK]
    with pytest.raises(Conflict):
        check_start(state, Step.DATA_PLANE, ())


def test_rollback_after_partial_data_plane_then_nothing_else() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    state = run(state, Step.DATA_PLANE, success=False, migrated=("default",))
    assert state.migrated == ("default",)
    state = run(state, Step.ROLLBACK, success=False)
    assert allowed_next(state) == [Step.ROLLBACK]
    with pytest.raises(Conflict):
        check_start(state, Step.DATA_PLANE, ())
    state = run(state, Step.ROLLBACK, success=True)
    assert state.phase is TaskPhase.ROLLED_BACK and state.migrated == ()
    with pytest.raises(Conflict, match="RolledBack"):
        check_start(state, Step.PRECHECK, ())


def test_complete_is_the_point_of_no_return() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    state = run(state, Step.DATA_PLANE, success=True, migrated=NAMESPACES)
    state = run(state, Step.COMPLETE, success=False)
    assert allowed_next(state) == [Step.COMPLETE]
    with pytest.raises(Conflict):
        check_start(state, Step.ROLLBACK, ())


def test_complete_needs_every_namespace_migrated() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    state = run(state, Step.DATA_PLANE, success=True, migrated=("shop",))
    with pytest.raises(Conflict, match="DataPlaneUpgrade"):
        check_start(state, Step.COMPLETE, ())


def test_bad_namespaces_are_400() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    state = run(state, Step.DATA_PLANE, success=True, migrated=("shop",))
    with pytest.raises(InvalidRequest, match="already migrated"):
        check_start(state, Step.DATA_PLANE, ("shop",))
    with pytest.raises(InvalidRequest, match="not an injected namespace"):
        check_start(state, Step.DATA_PLANE, ("nope",))
    with pytest.raises(InvalidRequest, match="twice"):
        check_start(state, Step.DATA_PLANE, ("default", "default"))
    with pytest.raises(InvalidRequest, match="only allowed with step DataPlaneUpgrade"):
        check_start(state, Step.ROLLBACK, ("default",))


def test_deletable_only_when_finished_or_only_prechecks() -> None:
    assert run(fresh(), Step.PRECHECK, success=False).deletable
    assert not started(fresh(), Step.PRECHECK, "j").deletable
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    assert not state.deletable


def test_history_records_each_run() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=False), Step.PRECHECK, success=True)
    assert state.history == (
        StepRun(Step.PRECHECK, "job-0", "Failed"),
        StepRun(Step.PRECHECK, "job-1", "Success"),
    )


def test_injection_changes_reach_pending_and_migrated() -> None:
    state = run(run(fresh(), Step.PRECHECK, success=True), Step.CONTROL_PLANE, success=True)
    state = run(state, Step.DATA_PLANE, success=True, migrated=("shop",))
    assert (state.migrated, state.pending) == (("shop",), ("default", "payments"))
    # "tools" newly injected (source revision): pending; "default" no longer injected: gone
    followed = follow_injection(state, ["shop", "payments", "tools"])
    assert followed.namespaces == ("shop", "payments", "tools")
    assert (followed.migrated, followed.pending) == (("shop",), ("payments", "tools"))
    assert allowed_next(followed) == [Step.DATA_PLANE, Step.ROLLBACK]
    # a migrated namespace whose injection is removed leaves "migrated" as well
    gone = follow_injection(followed, ["payments"])
    assert (gone.migrated, gone.pending) == ((), ("payments",))
    assert follow_injection(gone, ["payments"]) == gone
