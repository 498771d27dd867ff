"""One real server per database backend, loaded with the e2e seed file, shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import backends
from tests.support.conformance import ResponseChecker
from tests.support.databases import database_url
from tests.support.server import ServerProcess, start_server

# A tool's own test project, run by test_pytest_plugin.py in a pytest process of its own.
collect_ignore = ["plugin_project"]

SEED = Path(__file__).with_name("seed.yaml")
PROJECT = "0123456789abcdef0123456789abcdef"
EU_PROJECT = "11111111111111111111111111111111"
OTHER_PROJECT = "22222222222222222222222222222222"
PAY_JOB = "2d1c7a00-0000-4000-8000-000000000001"
PAY_LEAF_FAILED = "2d1c7a00-0000-4000-8000-000000000003"
SHOP_JOB = "3e2d8b00-0000-4000-8000-000000000001"
EU_JOB = "4f3e9c00-0000-4000-8000-000000000001"
OTHER_JOB = "5a4f0d00-0000-4000-8000-000000000001"
MISSING_JOB = "00000000-0000-4000-8000-00000000dead"

KEYS = {
    "root": ("AKROOTEXAMPLE0000001", "RootSecretKeyExample00000000000000000001"),
    "alice": ("AKALICEEXAMPLE000001", "AliceSecretKeyExample0000000000000000001"),
    "bob": ("AKBOBEXAMPLE00000001", "BobSecretKeyExample000000000000000000001"),
    "carol": ("AKCAROLEXAMPLE000001", "CarolSecretKeyExample0000000000000000001"),
    "dave": ("AKDAVEEXAMPLE0000001", "DaveSecretKeyExample00000000000000000001"),
    "erin": ("AKERINEXAMPLE0000001", "ErinSecretKeyExample00000000000000000001"),
    "frank": ("AKFRANKDISABLED00001", "FrankSecretKeyExample0000000000000000001"),
    "other": ("AKOTHERROOT000000001", "OtherSecretKeyExample0000000000000000001"),
}
PASSWORDS = {
    "acme-admin": "Root-Passw0rd!",
    "alice": "Alice-Passw0rd!",
    "bob": "Bob-Passw0rd!!",
    "carol": "Carol-Passw0rd!",
    "erin": "Erin-Passw0rd!",
}


@pytest.fixture(scope="session", params=backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"e2e-{request.param}")
    with database_url(str(request.param), workdir) as url:
        process = start_server(workdir, url, seed=SEED)
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture(autouse=True)
def documented_responses() -> Iterator[ResponseChecker]:
    """Every response of every end-to-end test must match the served OpenAPI document."""
    checker = ResponseChecker()
    with checker.instrumented():
        yield checker
    assert not checker.problems, "responses that differ from the OpenAPI document:\n" + "\n".join(
        checker.problems
    )
