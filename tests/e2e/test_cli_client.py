"""The ``meshup`` client commands end to end: the CLI runs as a subprocess against a real
``meshup serve`` process, as a user runs it from a shell.

One server per database backend holds an account declared below (a seed file written at start):
each test owns a mesh on its own simulated cluster, so the tests share the server. Simulated
clusters run twenty times faster than real time, so a step takes a moment and watching it shows
it progress. A second server without a seed file plays a first start: it writes
``meshup-credentials.json``, which the client reads.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import backends
from tests.support.databases import database_url
from tests.support.server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

PROJECT = "0cc1dd2ee3ff4a5b6c7d8e9f0a1b2c3d"
ACCOUNT, ROOT, PASSWORD = "clients", "cli-admin", "CliAdmin-Passw0rd!"
AK, SK = "AKCLIROOT00000000001", "CliRootSecretKeyExample00000000000000001"
STUCK_JOB = "6b5a1e00-0000-4000-8000-000000000001"
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
REQUEST_ID = r"\(request id [0-9a-f]{32}\)"
CLI_TIMEOUT = 120.0  # seconds: a whole command, waits included


def _cluster(cluster_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": cluster_id,
        "kubernetesVersion": "1.28",
        "nodes": {"count": 6, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "cart", "replicas": 2}],
            },
            {
                "name": "payments",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "ledger", "replicas": 1}],
            },
        ],
        **extra,
    }


MESHES = ("flow", "roll", "fault", "wait", "watch", "tty", "refuse", "stuck")
SEED: dict[str, Any] = {
    "accounts": [
        {
            "name": ACCOUNT,
            "projects": [{"name": "cn-north-4", "id": PROJECT}],
            "users": [
                {"name": ROOT, "root": True, "password": PASSWORD, "accessKeys": [{"ak": AK, "sk": SK}]},
            ],
            "clusters": [_cluster(f"cli-{name}") for name in MESHES if name != "fault"]
            + [
                _cluster("cli-fault", faults=[{"jobType": "InstallControlPlane", "reason": "quota exceeded"}])
            ],
            "meshes": [
                {
                    "name": f"mesh-{name}",
                    "project": "cn-north-4",
                    "version": SOURCE,
                    "clusters": [f"cli-{name}"],
                }
                for name in MESHES
                if name != "stuck"
            ]
            + [
                {
                    "name": "mesh-stuck",
                    "project": "cn-north-4",
                    "version": SOURCE,
                    "clusters": ["cli-stuck"],
                    "jobs": [  # a fixture job no worker runs: it stays Running
                        {
                            "uid": STUCK_JOB,
                            "type": "ControlPlaneUpgrade",
                            "subjobs": [
                                {
                                    "type": "InstallControlPlane",
                                    "target": "cluster cli-stuck",
                                    "phase": "Success",
                                },
                                {
                                    "type": "WaitControlPlaneReady",
                                    "target": "cluster cli-stuck",
                                    "phase": "Running",
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


# --- servers and the command -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"cli-{request.param}")
    seed = workdir / "seed.json"
    seed.write_text(json.dumps(SEED))
    with database_url(str(request.param), workdir) as url:
        process = start_server(workdir, url, seed=seed, extra_args=["--sim-speed", "0.05", "--workers", "2"])
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture(scope="module")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server started on an empty database without a seed: it writes meshup-credentials.json."""
    workdir = tmp_path_factory.mktemp("cli-first-start")
    with database_url("sqlite", workdir) as url:
        process = start_server(workdir, url, extra_args=["--sim-speed", "0"])
        try:
            yield process
        finally:
            process.stop()


def _command() -> list[str]:
    script = Path(sys.executable).with_name("meshup")
    return [str(script)] if script.exists() else [sys.executable, "-m", "meshup.cli"]


def clean_env(home: Path) -> dict[str, str]:
    """The test's environment without any meshup or SDK settings of the machine running it, nor
    a terminal size (a runner's COLUMNS would narrow the tables a pipeline reads)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MESHUP_", "HUAWEICLOUD_")) and k not in ("COLUMNS", "LINES")
    }
    env.update({"HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


class Cli:
    """``meshup`` with the root user's AK/SK in the official SDK's environment variables."""

    def __init__(self, server: ServerProcess, tmp: Path) -> None:
        self.server = server
        self.cwd = tmp
        self.env = clean_env(tmp) | {
            "MESHUP_ENDPOINT": server.url,
            "HUAWEICLOUD_SDK_AK": AK,
            "HUAWEICLOUD_SDK_SK": SK,
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
        }

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(list(args), env if env is not None else self.env, self.cwd)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"meshup {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def mesh_id(self, name: str) -> str:
        return str(self.json("mesh", "show", name)["metadata"]["uid"])


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Cli:
    return Cli(server, tmp_path)


def _single_error_line(stderr: str, code: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.fullmatch(rf"{re.escape(code)}: .+ {REQUEST_ID}", lines[0]), lines[0]
    return lines[0]


# --- meshes ----------------------------------------------------------------------------------------


def test_mesh_list_in_every_format(cli: Cli) -> None:
    table = cli.ok("mesh", "list")
    assert re.search(r"NAME\s+ID\s+VERSION\s+PHASE\s+CLUSTERS", table)
    assert re.search(rf"mesh-flow\s+[0-9a-f-]{{36}}\s+{re.escape(SOURCE)}\s+Running\s+cli-flow", table)

    listed = cli.json("mesh", "list")
    assert listed["kind"] == "MeshList"
    names = {item["metadata"]["name"] for item in listed["items"]}
    assert {f"mesh-{name}" for name in MESHES} <= names

    as_yaml = yaml.safe_load(cli.ok("mesh", "list", "-o", "yaml"))
    assert as_yaml == listed | {"items": as_yaml["items"]}
    assert sorted(m["metadata"]["uid"] for m in as_yaml["items"]) == sorted(
        m["metadata"]["uid"] for m in listed["items"]
    )


def test_mesh_create_show_delete(cli: Cli) -> None:
    created = cli.json(
        "mesh",
        "create",
        "mesh-made-by-cli",
        "--cluster",
        "cli-new",
        "--version",
        SOURCE,
        "--tag",
        "team=cli",
        "--wait",
    )
    assert created["status"]["phase"] == "Creating"
    uid = created["metadata"]["uid"]

    shown = cli.json("mesh", "show", "mesh-made-by-cli")  # by name
    assert shown["metadata"]["uid"] == uid
    assert shown["status"]["phase"] == "Running"  # --wait waited for the installation
    assert shown["spec"]["tags"] == [{"key": "team", "value": "cli"}]
    table = cli.ok("mesh", "show", uid)  # by id
    assert re.search(r"Phase\s+Running", table) and re.search(r"Clusters\s+cli-new", table)
    assert yaml.safe_load(cli.ok("mesh", "show", uid, "-o", "yaml"))["metadata"]["uid"] == uid

    deleted = cli.json("mesh", "delete", "mesh-made-by-cli", "--wait")
    assert deleted["status"]["phase"] == "Deleting"
    gone = cli("mesh", "show", uid)
    assert gone.returncode == 3
    assert "not found" in _single_error_line(gone.stderr, "ASM.01010002")
    missing = cli("mesh", "show", "mesh-made-by-cli")  # a name no mesh has any more
    assert missing.returncode == 3 and "no mesh named mesh-made-by-cli" in missing.stderr


# --- upgrades --------------------------------------------------------------------------------------


def test_a_whole_upgrade_step_by_step(cli: Cli) -> None:
    started = cli.json("upgrade", "start", "mesh-flow", "--target", TARGET, "--wait")
    task = started["metadata"]["uid"]
    assert started["metadata"]["name"] == "to-1-18-7-r5"
    assert started["spec"]["currentStep"] == {"step": "PreCheck"}
    assert cli.json("upgrade", "show", task)["status"]["phase"] == "Waiting"

    control = yaml.safe_load(cli.ok("upgrade", "step", task, "ControlPlaneUpgrade", "--wait", "-o", "yaml"))
    assert control["status"]["step"] == "ControlPlaneUpgrade"
    assert cli.json("job", "show", control["status"]["jobId"])["status"]["phase"] == "Success"

    cli.ok("upgrade", "step", task, "DataPlaneUpgrade", "--namespace", "shop", "--wait")
    after_shop = cli.json("upgrade", "show", task)
    assert after_shop["status"]["migratedNamespaces"] == ["shop"]
    assert after_shop["status"]["pendingNamespaces"] == ["payments"]
    cli.ok("upgrade", "step", task, "DataPlaneUpgrade", "--wait")  # all that remain
    cli.ok("upgrade", "step", task, "Complete", "--wait")

    done = cli.json("upgrade", "show", task)
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["pendingNamespaces"] == []
    assert cli.json("mesh", "show", "mesh-flow")["spec"]["version"] == TARGET
    table = cli.ok("upgrade", "show", task)
    assert re.search(r"Phase\s+Completed", table) and re.search(r"Step\s+Complete", table)

    tree = cli.ok("job", "show", done["status"]["jobId"])
    assert tree.splitlines()[0].startswith("✔ Complete")
    assert re.search(r"[├└]── ✔ SwitchDefaultRevision\s+cluster cli-flow", tree)

    cli.ok("upgrade", "delete", task)
    gone = cli("upgrade", "show", task)
    assert gone.returncode == 3
    _single_error_line(gone.stderr, "ASM.01010002")


def test_rollback(cli: Cli) -> None:
    task = cli.json("upgrade", "start", "mesh-roll", "-t", TARGET, "--wait")["metadata"]["uid"]
    cli.ok("upgrade", "step", task, "ControlPlaneUpgrade", "--wait")
    rolled = cli.json("upgrade", "rollback", task, "--wait")
    assert rolled["spec"]["currentStep"]["step"] == "Rollback"
    assert cli.json("upgrade", "show", task)["status"]["phase"] == "RolledBack"
    mesh = cli.json("mesh", "show", "mesh-roll")
    assert (mesh["status"]["phase"], mesh["spec"]["version"]) == ("Running", SOURCE)


def test_a_refused_step_prints_the_servers_error(cli: Cli) -> None:
    task = cli.json("upgrade", "start", "mesh-refuse", "-t", TARGET, "--wait")["metadata"]["uid"]
    refused = cli("upgrade", "step", task, "Complete")
    assert refused.returncode == 3
    assert refused.stdout == ""
    line = _single_error_line(refused.stderr, "ASM.01010003")
    assert "ControlPlaneUpgrade" in line  # names what is allowed now
    wrong = cli("upgrade", "step", task, "PreCheck", "--namespace", "shop")
    assert wrong.returncode == 2 and "DataPlaneUpgrade" in wrong.stderr  # a usage error, nothing sent


# --- waiting for jobs ------------------------------------------------------------------------------


def test_a_failed_step_exits_1_and_job_wait_agrees(cli: Cli) -> None:
    task = cli.json("upgrade", "start", "mesh-fault", "-t", TARGET, "--wait")["metadata"]["uid"]
    failed = cli("upgrade", "step", task, "ControlPlaneUpgrade", "--wait", "-o", "json")
    assert failed.returncode == 1, failed.stderr
    job = json.loads(failed.stdout)["status"]["jobId"]
    assert re.search(r"InstallControlPlane cluster cli-fault: Failed - .*quota exceeded", failed.stderr)
    assert failed.stderr.strip().splitlines()[-1].startswith("ControlPlaneUpgrade ")

    waited = cli("job", "wait", job, "--timeout", "30")
    assert waited.returncode == 1
    assert re.fullmatch(rf"job {job} ControlPlaneUpgrade: Failed - .*quota exceeded\n", waited.stdout)
    as_json = cli("job", "wait", job, "-o", "json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["status"]["phase"] == "Failed"
    assert cli.json("upgrade", "show", task)["status"]["phase"] == "Failed"


def test_job_wait_exits_0_on_success(cli: Cli) -> None:
    job = cli.json("upgrade", "start", "mesh-wait", "-t", TARGET)["status"]["jobId"]
    waited = cli("job", "wait", job, "--timeout", "60", "--interval", "0.1")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == f"job {job} PreCheck: Success\n"


def test_job_wait_and_watch_exit_2_on_timeout(cli: Cli) -> None:
    started = time.monotonic()
    waited = cli("job", "wait", STUCK_JOB, "--timeout", "1.5", "--interval", "0.2")
    assert waited.returncode == 2
    assert 1.4 < time.monotonic() - started < 60
    assert f"job {STUCK_JOB} did not finish in time" in waited.stderr
    watched = cli("job", "watch", STUCK_JOB, "--timeout", "1", "--interval", "0.2")
    assert watched.returncode == 2
    assert "WaitControlPlaneReady cluster cli-stuck: Running" in watched.stdout


def _job_reads(server: ServerProcess) -> int:
    """How many mesh-job GETs the server's access log holds (a stream is one, logged at its end)."""
    return server.log().count('"method":"GET","route":"/v1/{project_id}/mesh-job/{job_id}"')


def test_job_watch_without_a_terminal_prints_one_line_per_change(cli: Cli) -> None:
    task = cli.json("upgrade", "start", "mesh-watch", "-t", TARGET, "--wait")["metadata"]["uid"]
    job = cli.json("upgrade", "step", task, "ControlPlaneUpgrade")["status"]["jobId"]
    job_reads_before = _job_reads(cli.server)
    watched = cli("job", "watch", job, "--interval", "0.1")
    assert watched.returncode == 0, watched.stderr
    # It followed the server's event stream: one request for the whole watch, not one per poll.
    deadline = time.monotonic() + 5
    while _job_reads(cli.server) == job_reads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _job_reads(cli.server) == job_reads_before + 1
    lines = watched.stdout.splitlines()
    line = re.compile(
        r"(?P<type>[A-Za-z]+)(?: (?P<target>[^:]+))?: (?P<phase>Initializing|Running|Success|Failed)"
    )
    parsed = [line.fullmatch(text) for text in lines]
    assert all(parsed), lines
    assert lines[-1] == "ControlPlaneUpgrade mesh mesh-watch: Success"
    for leaf in ("InstallControlPlane", "WaitControlPlaneReady", "InstallGateways"):
        assert lines.count(f"{leaf} cluster cli-watch: Success") == 1
    # A line is a change: one node never shows the same phase twice in a row.
    phases: dict[tuple[str, str], list[str]] = {}
    for match in parsed:
        assert match is not None
        phases.setdefault((match["type"], match["target"] or ""), []).append(match["phase"])
    for seen in phases.values():
        assert all(a != b for a, b in itertools.pairwise(seen)), phases


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_job_watch_on_a_terminal_draws_the_live_tree(cli: Cli, tmp_path: Path) -> None:
    task = cli.json("upgrade", "start", "mesh-tty", "-t", TARGET, "--wait")["metadata"]["uid"]
    job = cli.json("upgrade", "step", task, "ControlPlaneUpgrade")["status"]["jobId"]
    socket = f"meshup-cli-test-{uuid.uuid4().hex[:12]}"  # a tmux server of this test alone
    tmux = ["tmux", "-u", "-L", socket, "-f", os.devnull]
    env = {k: v for k, v in cli.env.items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
    env.pop("TMUX", None)
    shell = (
        " ".join([*_command(), "job", "watch", job, "--interval", "0.1"]) + "; echo meshup-exit=$?; sleep 600"
    )
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "watch", "-x", "140", "-y", "40", shell],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=30,
    )
    try:
        screens: list[str] = []
        deadline = time.monotonic() + CLI_TIMEOUT
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "watch"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            screens.append(screen)
            if "meshup-exit=" in screen:
                break
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True, timeout=30, check=False)
    final = screens[-1]
    assert "meshup-exit=0" in final, final
    lines = [line.rstrip() for line in final.splitlines() if line.strip()]
    assert re.fullmatch(r"✔ ControlPlaneUpgrade  mesh mesh-tty  Success  \d+s", lines[0]), final
    assert re.fullmatch(r"├── ✔ InstallControlPlane  cluster cli-tty  \d+s", lines[1]), final
    assert re.fullmatch(r"├── ✔ WaitControlPlaneReady  cluster cli-tty  \d+s", lines[2]), final
    assert re.fullmatch(r"└── ✔ InstallGateways  cluster cli-tty  \d+s", lines[3]), final
    assert lines[4] == "meshup-exit=0"
    # The tree was drawn in place: one tree on the screen, not one per change.
    assert final.count("ControlPlaneUpgrade") == 1


# --- credentials -----------------------------------------------------------------------------------


def _names(stdout: str) -> set[str]:
    return {item["metadata"]["name"] for item in json.loads(stdout)["items"]}


def test_aksk_from_the_environment_without_a_project_id(cli: Cli) -> None:
    env = {k: v for k, v in cli.env.items() if k != "HUAWEICLOUD_SDK_PROJECT_ID"}
    done = cli("mesh", "list", "-o", "json", env=env)  # the key's only project is looked up
    assert done.returncode == 0, done.stderr
    assert "mesh-flow" in _names(done.stdout)


def test_aksk_from_flags(cli: Cli) -> None:
    env = clean_env(cli.cwd)
    args = ["--endpoint", cli.server.url, "--ak", AK, "--sk", SK, "--project-id", PROJECT]
    done = cli("mesh", "list", "-o", "json", *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "mesh-flow" in _names(done.stdout)
    wrong = cli("mesh", "list", *args[:4], "--sk", "x" * 40, "--project-id", PROJECT, env=env)
    assert wrong.returncode == 3
    line = _single_error_line(wrong.stderr, "APIGW.0301")
    assert "x" * 40 not in line and SK not in line


def test_password_login(cli: Cli) -> None:
    env = clean_env(cli.cwd) | {"MESHUP_ENDPOINT": cli.server.url}
    login = ["--user", ROOT, "--domain", ACCOUNT]
    done = cli(
        "mesh", "list", "-o", "json", *login, "--password", PASSWORD, "--project", "cn-north-4", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "mesh-flow" in _names(done.stdout)
    by_env = cli(
        "job",
        "show",
        STUCK_JOB,
        "-o",
        "json",
        *login,
        "--project-id",
        PROJECT,
        env=env | {"MESHUP_PASSWORD": PASSWORD},
    )
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["metadata"]["uid"] == STUCK_JOB
    refused = cli("mesh", "list", *login, "--password", "Wrong-Passw0rd!", "--project-id", PROJECT, env=env)
    assert refused.returncode == 3
    assert re.fullmatch(rf"Unauthorized: .+ {REQUEST_ID}\n", refused.stderr)
    assert "Wrong-Passw0rd!" not in refused.stderr


def test_no_credentials_at_all(cli: Cli) -> None:
    done = cli("mesh", "list", env=clean_env(cli.cwd) | {"MESHUP_ENDPOINT": cli.server.url})
    assert done.returncode == 3
    assert done.stderr.startswith("meshup: no credentials")


def test_an_unreachable_endpoint(cli: Cli) -> None:
    done = cli("mesh", "list", "--endpoint", "http://127.0.0.1:9")
    assert done.returncode == 3
    assert done.stderr.startswith("meshup: cannot reach http://127.0.0.1:9")


def test_the_credentials_file_of_a_first_start(first_start: ServerProcess, tmp_path: Path) -> None:
    stored = first_start.workdir / "meshup-credentials.json"
    assert stored.exists()
    demo = json.loads(stored.read_text())
    env = clean_env(tmp_path)  # no endpoint, no keys: all of it comes from the file

    in_place = run(["mesh", "list", "-o", "json"], env, first_start.workdir)
    assert in_place.returncode == 0, in_place.stderr
    assert _names(in_place.stdout) == {"demo-mesh"}

    elsewhere = run(["mesh", "show", "demo-mesh", "-o", "json", "--credentials", str(stored)], env, tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads(elsewhere.stdout)["metadata"]["uid"] == demo["meshId"]

    by_env = run(
        ["mesh", "list", "-o", "yaml", "--user", demo["userName"]],
        env | {"MESHUP_CREDENTIALS": str(stored)},
        tmp_path,
    )
    assert by_env.returncode == 0, by_env.stderr  # the file's password for the file's user
    assert [m["metadata"]["name"] for m in yaml.safe_load(by_env.stdout)["items"]] == ["demo-mesh"]
