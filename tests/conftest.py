"""Test-wide fixtures: the database backends every integration and end-to-end test runs on."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.support.databases import POSTGRES_ENV, postgres_base_url

# Importing the Huawei SDK writes ~/.huaweicloud; keep that out of the real home directory.
os.environ["HOME"] = tempfile.mkdtemp(prefix="meshup-test-home-")


def backends() -> list[str]:
    return ["sqlite", "postgres"] if postgres_base_url() else ["sqlite"]


def pytest_report_header() -> str:
    if postgres_base_url():
        return "meshup: PostgreSQL tests enabled"
    return f"meshup: PostgreSQL tests not collected ({POSTGRES_ENV} unset)"


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that exist only for PostgreSQL are not collected without it (not skipped: CI has it)."""
    if postgres_base_url():
        return
    kept = [item for item in items if item.get_closest_marker("postgres") is None]
    dropped = [item for item in items if item.get_closest_marker("postgres") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
