"""bench/engine.py at the smallest size, so that it keeps working: real worker processes drive
three upgrades to Complete, the bare loop finishes as many leaves, and the JSON has every figure."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import postgres_base_url

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

UPGRADES = 3
LEAVES_PER_UPGRADE = 35  # pre-check 13, control plane 6, data plane 10, complete 6


def test_the_engine_bench_runs_upgrades_to_complete_and_reports_both_loops(
    backend: str, tmp_path: Path
) -> None:
    out = tmp_path / "engine.json"
    where = ["--database-url", str(postgres_base_url())] if backend == "postgres" else []
    name = f"meshup_t_bench_{secrets.token_hex(4)}"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "engine.py"),
            "--upgrades",
            str(UPGRADES),
            "--workers",
            "1",
            "--database-name",
            name,
            "--json",
            str(out),
            *where,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["database"] == ("postgresql" if backend == "postgres" else "sqlite")
    assert result["upgrades"] == UPGRADES
    (row,) = result["results"]
    assert row["workers"] == 1 and row["leaves"] == UPGRADES * LEAVES_PER_UPGRADE
    for loop in ("engine", "bare"):
        assert row[f"{loop}_seconds"] > 0 and row[f"{loop}_leaves_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["engine_leaves_per_s"] / row["bare_leaves_per_s"])
    assert "engine/bare" in run.stdout
