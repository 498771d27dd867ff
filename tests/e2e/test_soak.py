"""One minute of the mixed-workload soak (bench/soak.py) on PostgreSQL, as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import postgres_base_url

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.serial, pytest.mark.e2e, pytest.mark.postgres]


def test_one_minute_soak_loses_nothing_and_answers_only_expected_statuses(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--minutes",
            "1",
            "--postgres-url",
            str(postgres_base_url()),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout)
    assert out.exists(), run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["unexpected"] == 0, result["unexpected_samples"]
    assert result["lost"] == [] and result["errors"] == [] and result["died"] == []
    # Work of every kind was acknowledged and then found again.
    assert result["acknowledged_jobs"] >= 8 and result["acknowledged_meshes"] >= 2
    for operation in ("poll", "task step", "token", "mesh create", "mesh list", "failed login"):
        assert sum(result["requests"][operation].values()) > 0, operation
    for name, memory in result["memory"].items():
        assert memory["growth"] < 0.10, (name, memory)
    assert run.returncode == 0, run.stdout + run.stderr
