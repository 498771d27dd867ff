"""The start-up state is kept for ``reset to start`` only while the database is small."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshup.control import service as control_service
from meshup.control.service import ControlService
from meshup.errors import Conflict
from meshup.store import tables as t
from tests.support.flow import Flow, two_cluster_seed


def _meshes(flow: Flow) -> int:
    from sqlalchemy import func, select

    with flow.rt.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t.meshes)).scalar_one())


def test_a_small_database_is_reset_to_its_start(tmp_path: Path) -> None:
    flow = Flow.start(f"sqlite:///{tmp_path / 'meshup.db'}", two_cluster_seed())
    control = ControlService(flow.rt)
    control.take_start_snapshot()
    assert _meshes(flow) == 1
    control.reset("empty")
    assert _meshes(flow) == 0
    control.reset("start")
    assert _meshes(flow) == 1


def test_a_large_database_is_not_held_in_memory_and_reset_to_start_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = Flow.start(f"sqlite:///{tmp_path / 'meshup.db'}", two_cluster_seed())
    monkeypatch.setattr(control_service, "MAX_START_SNAPSHOT_ROWS", 3)
    control = ControlService(flow.rt)
    control.take_start_snapshot()
    with pytest.raises(Conflict, match=r"start-up state was not kept: the database held \d+ rows"):
        control.reset("start")
    assert _meshes(flow) == 1  # refused before anything was touched
    control.reset("empty")
    assert _meshes(flow) == 0
