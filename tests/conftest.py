"""Test-wide fixtures: the database backends every integration and end-to-end test runs on."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.support.databases import POSTGRES_ENV, postgres_base_url

# Importing the Huawei SDK writes ~/.huaweicloud; keep that out of the real home directory.
os.environ["HOME"] = tempfile.mkdtemp(prefix="meshup-test-home-")


def backends() -> list[str]:
    return ["sqlite", "postgres"] if postgres_base_url() else ["sqlite"]


def pytest_report_header() -> list[str]:
    lines = [
        "meshup: PostgreSQL tests enabled"
        if postgres_base_url()
        else f"meshup: PostgreSQL tests not collected ({POSTGRES_ENV} unset)"
    ]
    if shutil.which("chromium") is None:
        lines.append("meshup: browser tests not collected (no chromium on PATH)")
    return lines


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need PostgreSQL or Chromium are not collected without it (not skipped: CI has both)."""
    missing = set()
    if not postgres_base_url():
        missing.add("postgres")
    if shutil.which("chromium") is None:
        missing.add("browser")
    kept = [item for item in items if not any(item.get_closest_marker(name) for name in missing)]
    dropped = [item for item in items if any(item.get_closest_marker(name) for name in missing)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
