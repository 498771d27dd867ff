"""The audit trail end to end: a real server per backend; changes, a refused call and a failed
login made with the official SDK and keystoneauth1; read back with the official CTS client
(``CtsClient.list_traces``), unchanged; and no secret anywhere in the table."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcts.v3 import CtsClient, ListTracesRequest
from keystoneauth1 import exceptions as ks_exceptions

from meshup.store.db import normalise_url
from tests.conftest import backends
from tests.support.clients import asm_client, call_json, get_mesh_job, keystone_token
from tests.support.server import ServerProcess, serve_backend

pytestmark = pytest.mark.e2e

SEED = Path(__file__).with_name("audit_seed.yaml")
PROJECT = "0dd1bb2cc3dd4ee5ff60718293a4b5c7"
DOMAIN = "auditors"
MESH_UP = "7e580000-0000-4000-8000-000000000001"
KEYS = {
    "root": ("AKAUDITROOT000000001", "AuditRootSecretKeyExample000000000000001"),
    "vera": ("AKAUDITVERA000000001", "AuditVeraSecretKeyExample000000000000001"),
    "nico": ("AKAUDITNICO000000001", "AuditNicoSecretKeyExample000000000000001"),
}
PASSWORDS = {"audit-admin": "AuditRoot-Passw0rd!", "vera": "Vera-Passw0rd!", "nico": "Nico-Passw0rd!"}
WRONG_PASSWORD = "Not-Her-Passw0rd!"


@pytest.fixture(scope="module", params=backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from serve_backend(
        str(request.param), tmp_path_factory, "audit", SEED, ["--sim-speed", "0", "--workers", "2"]
    )


def cts(server: ServerProcess, who: str) -> Any:
    ak, sk = KEYS[who]
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (
        CtsClient.new_builder()
        .with_credentials(BasicCredentials(ak, sk, PROJECT))
        .with_http_config(config)
        .with_endpoints([server.url])
        .build()
    )


def wait_job(client: Any, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, job = get_mesh_job(client, job_id)
        assert status == 200
        if job["status"]["phase"] in ("Success", "Failed"):
            assert job["status"]["phase"] == "Success", job["status"]
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def story(server: ServerProcess) -> dict[str, Any]:
    """Everything the tests read back, done once per server."""
    root = asm_client(server.url, *KEYS["root"], PROJECT)
    body = {
        "apiVersion": "v1",
        "kind": "Mesh",
        "metadata": {"name": "audited-mesh"},
        "spec": {
            "type": "InCluster",
            "version": "1.15.7-r1",
            "extendParams": {"clusters": [{"clusterID": "new1"}]},
        },
    }
    status, mesh = call_json(root, "POST", "/v1/{project_id}/meshes", body=body)
    assert status == 201
    task_body = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "audited-upgrade"},
        "spec": {
            "meshId": MESH_UP,
            "upgradeStrategy": "Canary",
            "targetVersion": "1.18.7-r5",
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
    status, task = call_json(root, "POST", "/v1/{project_id}/mesh-upgrade", body=task_body)
    assert status == 201
    wait_job(root, task["status"]["jobId"])
    step = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "spec": {"currentStep": {"step": "ControlPlaneUpgrade"}},
    }
    status, _ = call_json(
        root, "PUT", "/v1/{project_id}/mesh-upgrade/{id}", {"id": task["metadata"]["uid"]}, step
    )
    assert status == 200
    # Refused: nico may not read the trail (403); a change that conflicts (409); a bad signature (401).
    with pytest.raises(ClientRequestException) as denied:
        cts(server, "nico").list_traces(ListTracesRequest(trace_type="system"))
    assert denied.value.status_code == 403
    nico = asm_client(server.url, *KEYS["nico"], PROJECT)
    with pytest.raises(ClientRequestException) as conflict:
        call_json(nico, "POST", "/v1/{project_id}/meshes", body=body)
    assert conflict.value.status_code == 409
    forged = asm_client(server.url, KEYS["nico"][0], "Forged" + KEYS["nico"][1][6:], PROJECT)
    with pytest.raises(ClientRequestException) as unauthenticated:
        call_json(forged, "DELETE", "/v1/{project_id}/meshes/{id}", {"id": mesh["metadata"]["uid"]})
    assert unauthenticated.value.status_code == 401
    for _ in range(3):  # refused reads are traced too
        with pytest.raises(ClientRequestException):
            call_json(forged, "GET", "/v1/{project_id}/meshes")
    # Logins: one issued token, one wrong password.
    token, _ = keystone_token(server.url, "audit-admin", PASSWORDS["audit-admin"], DOMAIN, PROJECT)
    with pytest.raises(ks_exceptions.Unauthorized):
        keystone_token(server.url, "vera", WRONG_PASSWORD, DOMAIN, PROJECT)
    return {"mesh": mesh, "task": task, "token": token}


def listed(server: ServerProcess, who: str = "vera", **filters: Any) -> tuple[list[Any], Any]:
    response = cts(server, who).list_traces(ListTracesRequest(trace_type="system", **filters))
    return list(response.traces or []), response.meta_data


def test_a_mesh_create_is_traced(server: ServerProcess, story: dict[str, Any]) -> None:
    traces, meta = listed(server, trace_name="createMesh", trace_rating="normal")
    assert meta.count == len(traces) == 1
    trace = traces[0]
    mesh = story["mesh"]
    assert (trace.resource_id, trace.resource_name, trace.resource_type) == (
        mesh["metadata"]["uid"],
        "audited-mesh",
        "mesh",
    )
    assert (trace.code, trace.trace_rating, trace.service_type, trace.trace_type) == (
        "201",
        "normal",
        "ASM",
        "ApiCall",
    )
    assert (trace.user.name, trace.user.domain.name, trace.user.domain.id) == (
        "audit-admin",
        DOMAIN,
        "9a1e0d4b7c2f4d3e9f8071829304b5c7",
    )
    assert trace.user.access_key_id == KEYS["root"][0]
    assert trace.source_ip == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{32}", trace.request_id)
    assert abs(trace.time - time.time() * 1000) < 600_000 and trace.record_time >= trace.time
    assert trace.operation_id == "asm:mesh:create"


def test_an_upgrade_step_is_traced(server: ServerProcess, story: dict[str, Any]) -> None:
    task_id = story["task"]["metadata"]["uid"]
    traces, _ = listed(server, resource_id=task_id)
    assert [t.trace_name for t in traces] == ["updateMeshUpgrade", "createMeshUpgrade"]  # newest first
    assert all(t.resource_type == "meshUpgrade" and t.operation_id == "asm:mesh:upgrade" for t in traces)
    assert [t.code for t in traces] == ["200", "201"]


def test_refused_calls_are_traced(server: ServerProcess, story: dict[str, Any]) -> None:
    denied, _ = listed(server, trace_name="listTraces", user="nico")
    assert [(t.code, t.trace_rating, t.service_type) for t in denied] == [("403", "warning", "CTS")]
    assert denied[0].operation_id == "cts:trace:list" and "cts:trace:list" in denied[0].message
    conflict, _ = listed(server, trace_name="createMesh", trace_rating="warning")
    assert [(t.code, t.user.name) for t in conflict] == [("409", "nico")]
    forged, _ = listed(server, trace_name="deleteMesh")
    assert [(t.code, t.user.id, t.user.access_key_id) for t in forged] == [("401", "", KEYS["nico"][0])]
    assert forged[0].resource_id == story["mesh"]["metadata"]["uid"]
    assert forged[0].message == "signature mismatch"


def test_logins_are_traced(server: ServerProcess, story: dict[str, Any]) -> None:
    traces, _ = listed(server, service_type="IAM")
    outcomes = {(t.trace_name, t.user.name, t.code, t.trace_rating) for t in traces}
    assert ("login", "audit-admin", "201", "normal") in outcomes
    assert ("login", "vera", "401", "warning") in outcomes


def test_paging_with_next_and_limit_bounds(server: ServerProcess, story: dict[str, Any]) -> None:
    everything, meta = listed(server, limit=200)
    assert meta.marker is None and len(everything) >= 11
    times = [(t.time, t.trace_id) for t in everything]
    assert times == sorted(times, reverse=True)
    paged: list[Any] = []
    marker = None
    while True:
        page, meta = listed(server, limit=3, **({"next": marker} if marker else {}))
        assert len(page) <= 3 and meta.count == len(page)
        paged += page
        marker = meta.marker
        if marker is None:
            break
        assert marker == page[-1].trace_id
    assert [t.trace_id for t in paged] == [t.trace_id for t in everything]
    default, _ = listed(server)
    assert len(default) == 10  # CTS's default page
    for bad in (0, 201):
        with pytest.raises(ClientRequestException) as refused:
            listed(server, limit=bad)
        assert refused.value.status_code == 400
    oldest = everything[-1]
    window, _ = listed(server, limit=200, _from=oldest.time - 1, to=oldest.time + 1)
    assert oldest.trace_id in [t.trace_id for t in window]
    after, _ = listed(server, limit=200, _from=oldest.time)
    assert oldest.trace_id not in [t.trace_id for t in after]  # bounds are exclusive
    one, _ = listed(server, trace_id=oldest.trace_id, trace_name="nothing-matches")
    assert [t.trace_id for t in one] == [oldest.trace_id]  # a trace id voids the other filters
    response = cts(server, "vera").list_traces(ListTracesRequest(trace_type="data"))
    assert not response.traces


def test_no_secret_is_ever_recorded(server: ServerProcess, story: dict[str, Any]) -> None:
    engine = sa.create_engine(normalise_url(server.database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM traces")).all()
    finally:
        engine.dispose()
    text = "\n".join(repr(tuple(row)) for row in rows)
    assert len(rows) >= 11
    secrets = [*PASSWORDS.values(), WRONG_PASSWORD, story["token"], *(sk for _, sk in KEYS.values())]
    for secret in secrets:
        assert secret not in text
    assert "Signature" not in text and "X-Auth-Token" not in text
    assert not re.search(r"\b[0-9a-f]{64}\b", text)  # no signature


def test_an_unauthenticated_list_is_refused_and_traced(server: ServerProcess, story: dict[str, Any]) -> None:
    response = httpx.get(f"{server.url}/v3/{PROJECT}/traces", headers={"X-Auth-Token": "not-a-token"})
    assert response.status_code == 401
    traces, _ = listed(server, trace_name="listTraces", trace_rating="warning")
    assert "401" in [t.code for t in traces]


def cli(server: ServerProcess, tmp_path: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    from tests.e2e.test_cli_client import clean_env, run

    ak, sk = KEYS[who]
    env = clean_env(tmp_path) | {
        "MESHUP_ENDPOINT": server.url,
        "HUAWEICLOUD_SDK_AK": ak,
        "HUAWEICLOUD_SDK_SK": sk,
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
    }
    return run(["audit", "list", *args], env, tmp_path)


def test_meshup_audit_list(server: ServerProcess, story: dict[str, Any], tmp_path: Path) -> None:
    mesh_id = story["mesh"]["metadata"]["uid"]
    done = cli(server, tmp_path, "vera", "--resource-id", mesh_id, "--since", "1d", "-o", "json")
    assert done.returncode == 0, done.stderr
    names = [(t["trace_name"], t["code"]) for t in json.loads(done.stdout)["traces"]]
    assert ("createMesh", "201") in names and ("deleteMesh", "401") in names
    done = cli(server, tmp_path, "vera", "--user-name", "nico", "--limit", "1", "-o", "yaml")
    assert done.returncode == 0, done.stderr
    listed_yaml = yaml.safe_load(done.stdout)
    assert listed_yaml["meta_data"]["count"] == 1 and listed_yaml["traces"][0]["user"]["name"] == "nico"
    table = cli(server, tmp_path, "vera", "--since", "2h")
    assert table.returncode == 0, table.stderr
    assert "createMesh" in table.stdout and "audit-admin" in table.stdout and "TRACE" in table.stdout
    refused = cli(server, tmp_path, "nico")
    assert refused.returncode == 3 and "cts:trace:list" in refused.stderr
