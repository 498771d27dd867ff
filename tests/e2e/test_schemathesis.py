"""Schemathesis (every check) against the served OpenAPI document: with a token, AK/SK, and nothing.

Each run is the ``schemathesis run`` command line against a real server, seeded and bounded so
that CI stays within a minute or two; any finding fails the test with Schemathesis' own report
(reproducing curl commands included). Findings accepted for now are listed, one by one, in
``schemathesis-baseline/<run>.json`` beside this file; a finding not listed fails.

The long run is the same test with more examples per operation, e.g.:

    MESHUP_SCHEMATHESIS_EXAMPLES=500 pytest -p no:cacheprovider tests/e2e/test_schemathesis.py

After fixing an accepted finding, ``MESHUP_SCHEMATHESIS_BASELINE_UPDATE=1`` rewrites the baseline
from what the runs find (entries no longer reproduced are dropped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import KEYS, PASSWORDS, PROJECT, SEED, SHOP_JOB
from tests.support.paths import REPO
from tests.support.server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("MESHUP_SCHEMATHESIS_EXAMPLES", "8"))
# The seed's enterprise projects: a mesh body naming another one is refused by data, not schema.
ENTERPRISE_PROJECTS = ("7c1e0b2a-0000-4000-8000-000000000001", "7c1e0b2a-0000-4000-8000-000000000002")
SEED_NUMBER = int(os.environ.get("MESHUP_SCHEMATHESIS_SEED", "20261130"))
BASELINES = Path(__file__).with_name("schemathesis-baseline")
SHOP_MESH = "9b2f4c1e-0000-4000-8000-000000000002"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: the fuzzer creates, changes and deletes what it finds."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    server = start_server(
        workdir, f"sqlite:///{workdir / 'meshup.db'}", seed=SEED, extra_args=["--sim-speed", "0"]
    )
    try:
        yield server
    finally:
        server.stop()


def schemathesis(
    server: ServerProcess,
    name: str,
    *,
    parameters: dict[str, str],
    headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    config = server.workdir / f"{name}.toml"
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{key}" = "{value}"\n' for key, value in parameters.items())
    )
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED_NUMBER),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--baseline",
        str(BASELINES / f"{name}.json"),
    ]
    if os.environ.get("MESHUP_SCHEMATHESIS_BASELINE_UPDATE"):
        args += ["--baseline-update", "--baseline-prune"]
    for header, value in (headers or {}).items():
        args += ["--header", f"{header}: {value}"]
    run_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
        "MESHUP_FUZZ_ENTERPRISE_PROJECTS": ",".join(["0", *ENTERPRISE_PROJECTS]),
        **(env or {}),
    }
    done = subprocess.run(
        args, cwd=server.workdir, env=run_env, capture_output=True, text=True, timeout=900, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis ({name}) found problems:\n{report[-20000:]}"
    assert "No operations" not in report


def test_with_a_token(fuzzed: ServerProcess) -> None:
    login = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "acme-admin",
                        "password": PASSWORDS["acme-admin"],
                        "domain": {"name": "acme"},
                    }
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    issued = httpx.post(f"{fuzzed.url}/v3/auth/tokens", json=login)
    assert issued.status_code == 201
    token = issued.headers["X-Subject-Token"]
    schemathesis(fuzzed, "token", parameters={"project_id": PROJECT}, headers={"X-Auth-Token": token})


def test_with_aksk_signatures(fuzzed: ServerProcess) -> None:
    # carol may do everything but read payments jobs: the 200 paths and the policy paths both run.
    ak, sk = KEYS["carol"]
    schemathesis(
        fuzzed,
        "aksk",
        parameters={"project_id": PROJECT, "job_id": SHOP_JOB, "mesh_id": SHOP_MESH},
        env={"MESHUP_FUZZ_AK": ak, "MESHUP_FUZZ_SK": sk, "MESHUP_FUZZ_PROJECT_ID": PROJECT},
    )


def test_without_credentials(fuzzed: ServerProcess) -> None:
    schemathesis(fuzzed, "anonymous", parameters={"project_id": PROJECT})
