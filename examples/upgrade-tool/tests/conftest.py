"""Fixtures of the tool's tests, on top of the meshup plugin's (``meshup``, ``meshup_asm_client``)."""

from __future__ import annotations

from typing import Any

import pytest
from upgrade_tool import AsmApi, Upgrader

from meshup.control.client import ControlClient


@pytest.fixture
def api(meshup_asm_client: Any) -> AsmApi:
    return AsmApi(meshup_asm_client)


@pytest.fixture
def upgrader(meshup: ControlClient, api: AsmApi) -> Upgrader:
    """The tool as a user runs it, except that where it would sleep between two polls of a job,
    the server's manual clock runs every due job to its end: no test waits on wall time."""
    return Upgrader(api, sleep=lambda _seconds: meshup.run_until_idle())
