"""The control API (/meshup-api/) of a real server process: reset, snapshots, seed, clock, faults,
and who may call it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from meshup.control.client import ControlClient, ControlError
from meshup.seed.schema import SeedError, load_seed
from meshup.store import tables as t
from meshup.store.db import Database
from meshup.timefmt import parse_rfc3339
from tests.support.clients import asm_client, call_json
from tests.support.databases import database_url
from tests.support.server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

SEED = Path(__file__).with_name("control_seed.yaml")
TOKEN = "control-test-token-0123456789"
PROJECT = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"
MESH = "c2c2c2c2-0000-4000-8000-000000000001"
AK, SK = "AKCONTROLROOT0000001", "ControlRootSecretExample0000000000000001"
TASKS = "/v1/{project_id}/mesh-upgrade"
TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
JOB = "/v1/{project_id}/mesh-job/{job_id}"


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with database_url(backend, tmp_path) as url:
        process = start_server(
            tmp_path, url, seed=SEED, extra_args=["--clock", "manual", "--control-token", TOKEN]
        )
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture
def control(server: ServerProcess) -> Iterator[ControlClient]:
    with ControlClient(server.url, TOKEN) as client:
        yield client


def dump(server: ServerProcess) -> dict[str, list[str]]:
    """Every row of every table but ``epochs`` and ``worker_stats`` (cache counters and worker
    telemetry, which move only forward), sorted: the whole state."""
    db = Database(server.database_url)
    try:
        with db.read() as conn:
            return {
                table.name: sorted(
                    json.dumps(dict(row), sort_keys=True, default=str)
                    for row in conn.execute(select(table)).mappings()
                )
                for table in t.metadata.sorted_tables
                if table.name not in ("epochs", "worker_stats")
            }
    finally:
        db.dispose()


def new_task() -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "to-1-18"},
        "spec": {
            "meshId": MESH,
            "upgradeStrategy": "Canary",
            "targetVersion": "1.18.7-r5",
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }


def upgrade_through_control_plane(server: ServerProcess, control: ControlClient) -> dict[str, Any]:
    client = asm_client(server.url, AK, SK, PROJECT)
    status, task = call_json(client, "POST", TASKS, body=new_task())
    assert status == 201
    control.run_until_idle()
    task["spec"]["currentStep"] = {"step": "ControlPlaneUpgrade"}
    status, task = call_json(client, "PUT", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]}, task)
    assert status == 200
    control.run_until_idle()
    status, job = call_json(client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Success"
    return task


# --- who may call ---------------------------------------------------------------------------


def test_calls_without_the_control_token_are_refused(server: ServerProcess) -> None:
    for headers, says in (
        ({}, "needs the server's control token in the X-Meshup-Control-Token header"),
        ({"X-Meshup-Control-Token": "wrong"}, "does not hold this server's control token"),
    ):
        for method, path in (
            ("POST", "/reset"),
            ("GET", "/clock"),
            ("PUT", "/snapshots/x"),
            ("POST", "/seed"),
        ):
            response = httpx.request(method, f"{server.url}/meshup-api{path}", headers=headers, content=b"{")
            assert response.status_code == 403, (method, path)
            assert response.json() == {"errorCode": "ASM.01000002", "errorMsg": response.json()["errorMsg"]}
            assert says in response.json()["errorMsg"]
    assert (
        httpx.get(f"{server.url}/meshup-api/clock", headers={"X-Meshup-Control-Token": TOKEN}).status_code
        == 200
    )


def test_the_control_api_is_not_in_huaweis_openapi_document(server: ServerProcess) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/meshup-api")]


def test_control_api_off_serves_nothing(tmp_path: Path) -> None:
    with database_url("sqlite", tmp_path) as url:
        process = start_server(
            tmp_path, url, seed=SEED, extra_args=["--control-api", "off", "--control-token", TOKEN]
        )
        try:
            response = httpx.post(
                f"{process.url}/meshup-api/reset", headers={"X-Meshup-Control-Token": TOKEN}
            )
            assert response.status_code == 404
        finally:
            process.stop()


def test_first_start_saves_a_control_token_that_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'meshup.db'}"
    process = start_server(tmp_path, url)
    try:
        saved = json.loads((data / "meshup-credentials.json").read_text())
        token = saved["controlToken"]
        assert token in process.log()  # shown once, with the other first-start credentials
        with ControlClient(process.url, token) as client:
            assert client.clock()["mode"] == "system"
    finally:
        process.stop()
    again = start_server(tmp_path, url)
    try:
        assert token not in again.log()
        with ControlClient(again.url, token) as client:
            assert client.reset()["to"] == "start"
    finally:
        again.stop()


# --- reset and snapshots ----------------------------------------------------------------------


def test_reset_returns_to_the_state_at_start_exactly(server: ServerProcess, control: ControlClient) -> None:
    at_start = dump(server)
    upgrade_through_control_plane(server, control)
    control.add_fault("k2", "InstallGateways", reason="later")
    control.seed({"accounts": [{"name": "extra", "users": [{"name": "someone"}]}]})
    assert dump(server) != at_start
    result = control.reset()
    assert result["to"] == "start"
    assert result["ms"] < 1000  # typically a few ms; generous for a loaded machine
    assert dump(server) == at_start
    # The server works on the restored rows: the same upgrade runs again from the start.
    upgrade_through_control_plane(server, control)


def test_reset_to_empty_leaves_no_rows(server: ServerProcess, control: ControlClient) -> None:
    control.reset("empty")
    state = dump(server)
    assert {name: rows for name, rows in state.items() if rows and name != "settings"} == {}
    # Identity caches do not outlive the rows: the seed's key no longer authenticates.
    status, _ = call_json_status(server)
    assert status == 401
    control.reset("start")
    status, _ = call_json_status(server)
    assert status == 200


def call_json_status(server: ServerProcess) -> tuple[int, Any]:
    response = httpx.get(f"{server.url}/meshup-api/clock", headers={"X-Meshup-Control-Token": TOKEN})
    assert response.status_code == 200
    client = asm_client(server.url, AK, SK, PROJECT)
    try:
        return call_json(client, "GET", "/v1/{project_id}/meshes")
    except Exception as exc:
        return int(getattr(exc, "status_code", 0)), None


def test_snapshots_save_list_restore_delete(server: ServerProcess, control: ControlClient) -> None:
    upgrade_through_control_plane(server, control)
    upgraded = dump(server)
    saved = control.save_snapshot("after-control-plane")
    assert saved["name"] == "after-control-plane"
    assert [s["name"] for s in control.snapshots()] == ["after-control-plane"]
    control.reset()
    assert dump(server) != upgraded
    control.restore_snapshot("after-control-plane")
    assert dump(server) == upgraded
    control.delete_snapshot("after-control-plane")
    assert control.snapshots() == []
    for call, status in (
        (lambda: control.restore_snapshot("after-control-plane"), 404),
        (lambda: control.delete_snapshot("after-control-plane"), 404),
        (lambda: control.save_snapshot("no spaces allowed"), 400),
    ):
        with pytest.raises(ControlError) as info:
            call()
        assert info.value.status == status


# --- seed -------------------------------------------------------------------------------------


def test_seed_documents_in_json_and_yaml(
    server: ServerProcess, control: ControlClient, tmp_path: Path
) -> None:
    report = control.seed({"accounts": [{"name": "json-one", "users": [{"name": "u1"}]}]})
    assert report["accounts"] == ["json-one"] and report["users"] == 1
    good = tmp_path / "good.yaml"
    good.write_text("accounts:\n  - name: yaml-one\n    users: [{name: u2}, {name: u3}]\n")
    assert control.seed(good)["users"] == 2


def test_invalid_seeds_list_every_error_as_seed_apply_does(
    server: ServerProcess, control: ControlClient, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  - name: x\n    users: [{name: 1}]\n    clusters: [{id: c}]\n")
    with pytest.raises(SeedError) as expected:
        load_seed(bad)
    with pytest.raises(ControlError) as info:
        control.seed(bad)
    assert info.value.status == 400
    assert info.value.body["errorCode"] == "ASM.01010001"
    assert info.value.body["errors"] == expected.value.errors
    assert len(info.value.body["errors"]) >= 2
    broken = httpx.post(
        f"{server.url}/meshup-api/seed",
        headers={"X-Meshup-Control-Token": TOKEN, "Content-Type": "application/yaml"},
        content=b"accounts: [\n",
    )
    assert broken.status_code == 400
    assert broken.json()["errors"][0].startswith("(body): invalid YAML at line")


# --- the clock --------------------------------------------------------------------------------


def test_the_manual_clock_moves_only_when_told(server: ServerProcess, control: ControlClient) -> None:
    clock = control.clock()
    assert clock["mode"] == "manual"
    assert control.clock()["now"] == clock["now"]
    client = asm_client(server.url, AK, SK, PROJECT)
    _, task = call_json(client, "POST", TASKS, body=new_task())
    advanced = control.advance(3600)
    assert parse_rfc3339(advanced["now"]) - parse_rfc3339(clock["now"]) == timedelta(seconds=3600)
    _, job = call_json(client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Success"  # everything due within the hour ran, to idle
    later = control.set_clock("manual", now="2099-01-01T00:00:00Z")
    assert later["now"] == "2099-01-01T00:00:00Z"
    with pytest.raises(ControlError) as info:
        control.set_clock("manual", now="2000-01-01T00:00:00Z")
    assert (info.value.status, "backwards" in str(info.value)) == (400, True)
    system = control.set_clock("system", speed=60)
    assert (system["mode"], system["speed"]) == ("system", 60.0)
    assert parse_rfc3339(system["now"]) >= parse_rfc3339("2099-01-01T00:00:00Z")  # never backwards
    with pytest.raises(ControlError) as info:
        control.advance(1)
    assert info.value.status == 409


def test_advance_runs_a_waiting_step_at_its_due_time(server: ServerProcess, control: ControlClient) -> None:
    client = asm_client(server.url, AK, SK, PROJECT)
    _, task = call_json(client, "POST", TASKS, body=new_task())
    control.run_until_idle()
    task["spec"]["currentStep"] = {"step": "ControlPlaneUpgrade"}
    _, task = call_json(client, "PUT", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]}, task)
    control.advance(0.5)  # installs, not yet ready (a revision takes 6 simulated seconds)
    _, job = call_json(client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Running"
    control.advance(60)
    _, job = call_json(client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Success"


# --- faults -----------------------------------------------------------------------------------


def test_faults_at_run_time(server: ServerProcess, control: ControlClient) -> None:
    seeded = control.faults()
    assert [(f["cluster"], f["jobType"], f["fired"]) for f in seeded] == [("k1", "RemoveGateways", 0)]
    assert seeded[0]["id"].startswith("seed-")
    added = control.add_fault("k2", "InstallControlPlane", reason="quota exceeded", times=1)
    assert added["id"].startswith("flt-")
    assert [f["id"] for f in control.faults("k2")] == [added["id"]]
    for body, status in (
        ({"cluster": "k2", "jobType": "NoSuchStep"}, 400),
        ({"cluster": "k2", "jobType": "InstallControlPlane", "neverReady": True}, 400),
        ({"cluster": "k2", "jobType": "InstallControlPlane", "workload": "cart"}, 400),
        ({"cluster": "nowhere", "jobType": "InstallControlPlane"}, 404),
        ({"cluster": "k2", "jobType": "InstallControlPlane", "times": 0}, 400),
    ):
        response = httpx.post(
            f"{server.url}/meshup-api/faults", headers={"X-Meshup-Control-Token": TOKEN}, json=body
        )
        assert response.status_code == status, body
    client = asm_client(server.url, AK, SK, PROJECT)
    _, task = call_json(client, "POST", TASKS, body=new_task())
    control.run_until_idle()
    task["spec"]["currentStep"] = {"step": "ControlPlaneUpgrade"}
    _, task = call_json(client, "PUT", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]}, task)
    control.run_until_idle()
    _, job = call_json(client, "GET", JOB, {"job_id": task["status"]["jobId"]})
    assert job["status"]["phase"] == "Failed"
    assert "quota exceeded" in job["status"]["reason"]
    assert [f["fired"] for f in control.faults("k2")] == [1]
    control.delete_fault(added["id"])
    control.delete_fault(seeded[0]["id"])
    assert control.faults() == []
    with pytest.raises(ControlError) as info:
        control.delete_fault(added["id"])
    assert info.value.status == 404


# --- meshup admin and serve --ephemeral ---------------------------------------------------------


def admin(server: ServerProcess, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "meshup.cli",
            "admin",
            "--endpoint",
            server.url,
            "--control-token",
            token,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_meshup_admin_commands(server: ServerProcess, tmp_path: Path) -> None:
    assert json.loads(admin(server, "clock").stdout)["mode"] == "manual"
    added = json.loads(
        admin(server, "fault", "add", "k2", "InstallGateways", "--times", "2", "--reason", "r").stdout
    )
    listed = json.loads(admin(server, "fault", "list", "--cluster", "k2").stdout)
    assert [(f["id"], f["times"], f["reason"]) for f in listed] == [(added["id"], 2, "r")]
    assert admin(server, "snapshot", "save", "one").returncode == 0
    assert [s["name"] for s in json.loads(admin(server, "snapshot", "list").stdout)] == ["one"]
    assert json.loads(admin(server, "reset").stdout)["to"] == "start"
    assert json.loads(admin(server, "fault", "list", "--cluster", "k2").stdout) == []
    assert admin(server, "snapshot", "restore", "one").returncode == 0
    assert len(json.loads(admin(server, "fault", "list", "--cluster", "k2").stdout)) == 1
    assert json.loads(admin(server, "advance", "30").stdout)["leaves"] == 0
    assert "leaves" in json.loads(admin(server, "run-until-idle").stdout)
    bad = tmp_path / "bad.json"
    bad.write_text('{"accounts": [{"name": 1}]}')
    refused = admin(server, "seed", str(bad))
    assert refused.returncode == 1
    assert "accounts[0].name" in refused.stderr
    wrong = admin(server, "clock", token="nope")
    assert wrong.returncode == 1
    assert "control token" in wrong.stderr


def test_ephemeral_server_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meshup.testing import MeshupServer

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with MeshupServer() as server:
        assert list(tmp_path.glob("meshup-ephemeral-*/meshup.db"))
        assert server.control.clock()["mode"] == "manual"
    assert list(tmp_path.glob("meshup-ephemeral-*")) == []
