"""The namespace APIs and the upgrade task list, end to end on a real ``meshup serve``.

The SDK has no methods for the namespace APIs, so they are called with raw HTTP and keystoneauth1
tokens (their paths name no project: the token's scope does) and with AK/SK signed as the SDK signs
(``X-Project-Id``). Injection changes are checked in the simulated driver's facts and in the
active upgrade task; the task list through the SDK's ``call_api`` and ``meshup upgrade list``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshup.clock import SystemClock
from meshup.drivers.base import ClusterFacts
from meshup.drivers.simulated import SimulatedDriver
from meshup.drivers.simulated_timing import SimTiming
from meshup.iam.signing import sign
from meshup.store.db import Database
from tests.conftest import backends
from tests.e2e.test_cli_client import clean_env, run
from tests.support.clients import asm_client, call_json, keystone_token
from tests.support.server import ServerProcess, serve_backend
from tests.support.wire import FORBIDDEN, INVALID, NOT_FOUND

pytestmark = pytest.mark.e2e

SEED = Path(__file__).with_name("namespaces_seed.yaml")
ACCOUNT = "5b1e0d4b7c2f4d3e9f8071829304b5c7"
DOMAIN = "nsacct"
PROJECT = "1bb2cc3dd4ee5ff60718293a4b5c6d7e"
ROOT = ("AKNSROOT000000000001", "NsRootSecretExample000000000000000000001")
NINA = ("AKNSNINA000000000001", "NsNinaSecretExample000000000000000000001")
MESH_NS = "9a000000-0000-4000-8000-000000000001"
MESH_TASK = "9a000000-0000-4000-8000-000000000002"
MESH_OTHER = "9a000000-0000-4000-8000-000000000003"
MISSING = "9a000000-0000-4000-8000-00000000dead"
TASKS = "/v1/{project_id}/mesh-upgrade"


@pytest.fixture(scope="module", params=backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve_backend(
        str(request.param), tmp_path_factory, "namespaces", SEED, ["--sim-speed", "0", "--workers", "2"]
    )


def token(server: ServerProcess, user: str, password: str) -> str:
    return keystone_token(server.url, user, password, DOMAIN, PROJECT)[0]


def with_token(server: ServerProcess, method: str, path: str, tok: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", headers={"X-Auth-Token": tok}, json=body)


def signed(
    server: ServerProcess, method: str, path: str, key: tuple[str, str], body: Any = None
) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Host": f"127.0.0.1:{server.port}",
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
    }
    headers["Authorization"] = sign(
        method, path, headers, content, key[0], key[1], sdk_date=headers["X-Sdk-Date"]
    )
    return httpx.request(method, f"{server.url}{path}", headers=headers, content=content)


def facts(server: ServerProcess, cluster_id: str) -> ClusterFacts:
    driver = SimulatedDriver(Database(server.database_url), SystemClock(), ACCOUNT, SimTiming(speed=0))
    return driver.facts(cluster_id)


def injection_body(namespaces: list[str], *, restart: bool) -> dict[str, Any]:
    return {"restartNamespacePod": restart, "InjectNamespaces": namespaces}


def wait_task(client: Any, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, task = call_json(client, "GET", TASKS + "/{t}", {"t": task_id})
        if task["status"]["phase"] != "Running":
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still running")


def create_task(client: Any, mesh_id: str, name: str) -> dict[str, Any]:
    body = {
        "metadata": {"name": name},
        "spec": {
            "meshId": mesh_id,
            "upgradeStrategy": "Canary",
            "targetVersion": "1.18.7-r5",
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
    status, task = call_json(client, "POST", TASKS, body=body)
    assert status == 201
    return wait_task(client, task["metadata"]["uid"])


# --- the namespace APIs ----------------------------------------------------------------------------


def test_list_and_read_injection_with_a_keystone_token(server: ServerProcess) -> None:
    tok = token(server, "gus", "Gus-Passw0rd!!")
    listed = with_token(server, "GET", f"/v2/meshes/{MESH_NS}/namespaces", tok)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"mesh_id": MESH_NS, "namespaces": ["payments", "shop", "tools"]}
    got = with_token(server, "GET", f"/v2/meshes/{MESH_NS}/injection", tok)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "clusterId": "n1",
        "restartNamespacePod": False,
        "InjectNamespaces": ["shop", "payments"],
        "allowNsInject": True,
        "namespaces": {
            "shop": {"istioInjection": "enabled"},
            "payments": {"istioInjection": "enabled"},
            "tools": {"istioInjection": "disabled"},
        },
        "errMsg": "",
    }


def test_denials_unknown_meshes_and_scope(server: ServerProcess) -> None:
    gus = token(server, "gus", "Gus-Passw0rd!!")
    denied = with_token(
        server, "PUT", f"/v2/meshes/{MESH_NS}/injection", gus, injection_body([], restart=False)
    )
    assert (denied.status_code, denied.json()["errorCode"]) == FORBIDDEN
    assert "asm:mesh:updateNamespace" in denied.json()["errorMsg"]
    missing = with_token(server, "GET", f"/v2/meshes/{MISSING}/namespaces", gus)
    assert (missing.status_code, missing.json()["errorCode"]) == NOT_FOUND
    # nina may act on meshes tagged team=payments only
    other = signed(server, "GET", f"/v2/meshes/{MESH_OTHER}/injection", NINA)
    assert (other.status_code, other.json()["errorCode"]) == FORBIDDEN
    assert signed(server, "GET", f"/v2/meshes/{MESH_NS}/injection", NINA).status_code == 200
    bad = signed(server, "PUT", f"/v2/meshes/{MESH_NS}/injection", NINA, {"InjectNamespaces": ["shop"]})
    assert (bad.status_code, bad.json()["errorCode"]) == INVALID
    assert "restartNamespacePod" in bad.json()["errorMsg"]
    unknown = signed(
        server, "PUT", f"/v2/meshes/{MESH_NS}/injection", NINA, injection_body(["nope"], restart=False)
    )
    assert (unknown.status_code, unknown.json()["errorCode"]) == NOT_FOUND
    assert "is not a namespace of cluster n1" not in unknown.json()["errorMsg"]
    assert "nope is not a namespace of the clusters of mesh mesh-ns" in unknown.json()["errorMsg"]
    # an unscoped token names no project: the path has none either
    unscoped = httpx.post(
        f"{server.url}/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "gus", "password": "Gus-Passw0rd!!", "domain": {"name": DOMAIN}}
                    },
                }
            }
        },
    ).headers["X-Subject-Token"]
    assert with_token(server, "GET", f"/v2/meshes/{MESH_NS}/namespaces", unscoped).status_code == 401


def test_update_injection_relabels_and_restarts(server: ServerProcess) -> None:
    before = facts(server, "n1")
    assert before.namespace("tools") is not None and before.namespace("tools").labels == {}  # type: ignore[union-attr]
    answer = signed(
        server,
        "PUT",
        f"/v2/meshes/{MESH_NS}/injection",
        NINA,
        injection_body(["shop", "tools"], restart=True),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["InjectNamespaces"] == ["shop", "tools"]
    assert answer.json()["restartNamespacePod"] is True
    assert answer.json()["namespaces"]["payments"] == {"istioInjection": "disabled"}
    after = facts(server, "n1")
    tools, payments, shop = (after.namespace(n) for n in ("tools", "payments", "shop"))
    assert tools is not None and payments is not None and shop is not None
    assert tools.labels == {"istio.io/rev": "1-15-7-r1"}
    assert [w.sidecar_version for w in tools.workloads] == ["1.15.7-r1"]
    assert payments.labels == {}
    assert [w.sidecar_version for w in payments.workloads] == [None]
    assert shop.labels == before.namespace("shop").labels  # type: ignore[union-attr]
    again = with_token(
        server, "GET", f"/v2/meshes/{MESH_NS}/injection", token(server, "nina", "Nina-Passw0rd!")
    )
    assert again.json()["InjectNamespaces"] == ["shop", "tools"]


def test_the_active_task_follows_injection_changes(server: ServerProcess) -> None:
    client = asm_client(server.url, *NINA, PROJECT)
    task = create_task(client, MESH_TASK, "follow-injection")
    assert task["status"]["phase"] == "Waiting", task
    assert task["status"]["pendingNamespaces"] == ["shop", "payments"]
    task_id = task["metadata"]["uid"]
    path = f"/v2/meshes/{MESH_TASK}/injection"
    assert (
        signed(
            server, "PUT", path, NINA, injection_body(["shop", "payments", "tools"], restart=False)
        ).status_code
        == 200
    )
    _, task = call_json(client, "GET", TASKS + "/{t}", {"t": task_id})
    assert task["status"]["pendingNamespaces"] == ["shop", "payments", "tools"]
    assert (
        signed(server, "PUT", path, NINA, injection_body(["shop", "tools"], restart=False)).status_code == 200
    )
    _, task = call_json(client, "GET", TASKS + "/{t}", {"t": task_id})
    assert task["status"]["pendingNamespaces"] == ["shop", "tools"]
    assert task["status"]["migratedNamespaces"] == []


# --- the task list ---------------------------------------------------------------------------------


def test_task_list_filters_by_permission_and_pages(server: ServerProcess, tmp_path: Path) -> None:
    root = asm_client(server.url, *ROOT, PROJECT)
    other = create_task(root, MESH_OTHER, "other-task")
    status, listed = call_json(root, "GET", TASKS)
    assert status == 200 and listed["kind"] == "MeshUpgradeList"
    ids = [t["metadata"]["uid"] for t in listed["items"]]
    assert ids[0] == other["metadata"]["uid"]  # newest first
    meshes = {t["spec"]["meshId"] for t in listed["items"]}
    assert MESH_OTHER in meshes and MESH_TASK in meshes
    nina = asm_client(server.url, *NINA, PROJECT)
    _, seen = call_json(nina, "GET", TASKS)
    assert {t["spec"]["meshId"] for t in seen["items"]} == {MESH_TASK}
    denied = signed(server, "GET", f"/v1/{PROJECT}/mesh-upgrade?meshId={MESH_OTHER}", NINA)
    assert (denied.status_code, denied.json()["errorCode"]) == FORBIDDEN
    first = signed(server, "GET", f"/v1/{PROJECT}/mesh-upgrade?limit=1", ROOT).json()
    assert [t["metadata"]["uid"] for t in first["items"]] == ids[:1] and first["nextMarker"] == ids[0]
    rest = signed(server, "GET", f"/v1/{PROJECT}/mesh-upgrade?limit=1&marker={ids[0]}", ROOT).json()
    assert [t["metadata"]["uid"] for t in rest["items"]] == ids[1:2]
    bad = signed(server, "GET", f"/v1/{PROJECT}/mesh-upgrade?limit=0", ROOT)
    assert (bad.status_code, bad.json()["errorCode"]) == INVALID
    # the command-line client, as a subprocess
    env = clean_env(tmp_path) | {
        "MESHUP_ENDPOINT": server.url,
        "HUAWEICLOUD_SDK_AK": ROOT[0],
        "HUAWEICLOUD_SDK_SK": ROOT[1],
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
    }
    done = run(["upgrade", "list", "-o", "json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["metadata"]["uid"] for t in json.loads(done.stdout)["items"]] == ids
    done = run(["upgrade", "list", "--mesh", "mesh-other", "-o", "json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [t["metadata"]["uid"] for t in json.loads(done.stdout)["items"]] == [other["metadata"]["uid"]]
    table = run(["upgrade", "list"], env, tmp_path)
    assert table.returncode == 0 and "other-task" in table.stdout and "follow-injection" in table.stdout
