"""The pytest plugin (entry point ``pytest11``): fixtures for tests of tools that drive ASM.

Nothing happens unless a test uses a fixture. ``meshup_server`` (session) starts one real server
on an ephemeral database and a manual clock, seeded from the ini option ``meshup_seed`` (relative
to the rootdir; default: :data:`meshup.testing.DEFAULT_SEED`); ``meshup`` resets it to that state
before each test and hands out its :class:`~meshup.control.client.ControlClient`;
``@pytest.mark.meshup_seed("file.yaml")`` (relative to the test file) applies one more seed after
the reset; ``meshup_credentials`` and ``meshup_asm_client`` call as the seed's root user.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from meshup.control.client import ControlClient
    from meshup.testing.server import Credentials, MeshupServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("meshup_seed", "Seed file the meshup_server fixture starts meshup with", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "meshup_seed(path): apply this seed file (relative to the test file) after the reset"
    )


@pytest.fixture(scope="session")
def meshup_server(pytestconfig: pytest.Config) -> Iterator[MeshupServer]:
    from meshup.testing.server import DEFAULT_SEED, MeshupServer

    configured = str(pytestconfig.getini("meshup_seed") or "")
    seed = pytestconfig.rootpath / configured if configured else DEFAULT_SEED
    with MeshupServer(seed=seed) as server:
        yield server


def _marked_seed(request: pytest.FixtureRequest) -> Path | None:
    marker = request.node.get_closest_marker("meshup_seed")
    if marker is None:
        return None
    return Path(request.node.path).parent / str(marker.args[0])


@pytest.fixture
def meshup(meshup_server: MeshupServer, request: pytest.FixtureRequest) -> ControlClient:
    control = meshup_server.control
    control.reset()
    seed = _marked_seed(request)
    if seed is not None:
        control.seed(seed)
    return control


@pytest.fixture
def meshup_credentials(
    meshup: ControlClient, meshup_server: MeshupServer, request: pytest.FixtureRequest
) -> Credentials:
    from meshup.testing.server import credentials_from_seed

    seed = _marked_seed(request)
    return credentials_from_seed(seed, meshup_server.url) if seed else meshup_server.credentials


@pytest.fixture
def meshup_asm_client(meshup_credentials: Credentials) -> Any:
    """The official SDK's ``AsmClient``, AK/SK-signed as the seed's root user."""
    pytest.importorskip("huaweicloudsdkasm")
    from huaweicloudsdkasm.v1 import AsmClient
    from huaweicloudsdkcore.auth.credentials import BasicCredentials

    return (
        AsmClient.new_builder()
        .with_credentials(
            BasicCredentials(
                meshup_credentials.access_key, meshup_credentials.secret_key, meshup_credentials.project_id
            )
        )
        .with_endpoints([meshup_credentials.endpoint])
        .build()
    )
