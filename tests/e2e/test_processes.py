"""``meshup serve --processes 2``: one port answered by two processes over one database.

Which process answered a request is read from the operating system, not from anything the server
says: the test keeps its connection open and looks for the process holding the server's end of it
(``/proc/net/tcp`` gives the socket's inode, ``/proc/<pid>/fd`` who holds it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from meshup.store import tables as t
from meshup.store.db import Database
from tests.support.databases import database_url
from tests.support.flood import login_body
from tests.support.server import ServerProcess, start_server

pytestmark = [
    pytest.mark.serial,
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc"),
]

DEADLINE = 60.0  # for things that happen in a second or two on a quiet machine


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as listing:
            found |= {int(child) for child in listing.read().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def server_socket_inode(port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    local, remote = f"0100007F:{port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[9])
    return None


def holder(inode: int, candidates: set[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: meshup\r\n\r\n"


def answering_process(server: ServerProcess, request: bytes = HEALTHZ, status: int = 200) -> int | None:
    """One request on a new connection; the process that answered it (or None if unsure)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        reply = sock.recv(65536)
        assert reply.startswith(f"HTTP/1.1 {status}".encode()), reply
        inode = server_socket_inode(server.port, sock.getsockname()[1])
        return None if inode is None else holder(inode, children(server.process.pid))


def answering_processes(
    server: ServerProcess, count: int, request: bytes = HEALTHZ, status: int = 200
) -> set[int]:
    """Requests on new connections until ``count`` different processes have answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    while len(seen) < count and time.monotonic() < deadline:
        pid = answering_process(server, request, status)
        if pid is not None:
            seen.add(pid)
    return seen


def worker_pids(url: str) -> set[int]:
    """Processes whose engine workers have written a heartbeat."""
    db = Database(url)
    try:
        with db.read() as conn:
            rows = conn.execute(select(t.worker_stats.c.pid).where(t.worker_stats.c.owner != "retired"))
            return {int(row.pid) for row in rows}
    finally:
        db.dispose()


def accounts(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.accounts)).scalar_one())
    finally:
        db.dispose()


@pytest.fixture
def two_processes(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``serve --processes 2`` on an empty database (its first start)."""
    with database_url(backend, tmp_path) as url:
        server = start_server(
            tmp_path, url, extra_args=["--processes", "2", "--max-header-line-bytes", "512"]
        )
        try:
            yield server
        finally:
            for pid in children(server.process.pid) if alive(server.process.pid) else set():
                os.kill(pid, signal.SIGKILL)  # only if the test failed before its SIGTERM
            server.stop()


def test_two_processes_answer_one_port_and_stop_together(two_processes: ServerProcess) -> None:
    server = two_processes
    serving = answering_processes(server, 2)
    assert len(serving) == 2, f"only {serving} answered:\n{server.log()}"
    assert serving <= children(server.process.pid)

    # The first start happened once, before the processes were started.
    assert accounts(server.database_url) == 1
    assert server.log().count("first start, created a demo account") == 1
    credentials = json.loads((server.workdir / "meshup-credentials.json").read_text())
    token = httpx.post(
        f"{server.url}/v3/auth/tokens",
        json=login_body(
            credentials["userName"],
            credentials["password"],
            credentials["domainName"],
            credentials["projectId"],
        ),
    )
    assert token.status_code == 201, token.text

    # Each process runs its own engine workers.
    deadline = time.monotonic() + DEADLINE
    while not serving <= worker_pids(server.database_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serving <= worker_pids(server.database_url)

    # Each process bounds request heads as a single server does (the configured limit, 431).
    oversized = b"GET /healthz HTTP/1.1\r\nHost: meshup\r\nX-Long: " + b"a" * 600 + b"\r\n\r\n"
    assert answering_processes(server, 2, oversized, 431) == serving

    # Several processes serve no control API (its clock and snapshots would be one process's).
    control = httpx.get(f"{server.url}/meshup-api/clock")
    assert control.status_code == 404, control.text

    everyone = children(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DEADLINE) == 0
    deadline = time.monotonic() + DEADLINE
    while any(alive(pid) for pid in everyone) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in everyone if alive(pid)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


def test_a_killed_process_is_replaced(two_processes: ServerProcess) -> None:
    server = two_processes
    serving = answering_processes(server, 2)
    assert len(serving) == 2, f"only {serving} answered:\n{server.log()}"
    victim = min(serving)
    os.kill(victim, signal.SIGKILL)

    # The port keeps answering meanwhile, and a new process joins the one that survived.
    deadline = time.monotonic() + DEADLINE
    now_serving: set[int] = set()
    while time.monotonic() < deadline:
        pid = answering_process(server)
        if pid is not None and pid != victim:
            now_serving.add(pid)
        if len(now_serving) == 2:
            break
    assert victim not in now_serving
    assert len(now_serving) == 2, f"{now_serving} answered after {victim} was killed:\n{server.log()}"
    assert now_serving - serving, "no new process was started"


def test_the_processes_end_when_their_supervisor_is_killed(two_processes: ServerProcess) -> None:
    """No orphan keeps the port: a serving process whose supervisor died ends (Linux tells it)."""
    server = two_processes
    serving = answering_processes(server, 2)
    assert len(serving) == 2, f"only {serving} answered:\n{server.log()}"
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while any(alive(pid) for pid in serving) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in serving if alive(pid)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "--processes / MESHUP_PROCESSES must be 1 or more"),
        (["--processes", "2", "--control-api", "on"], "the control API needs a single process"),
        (["--processes", "2", "--clock", "manual"], "a manual clock is moved through the control API"),
    ],
)
def test_what_several_processes_cannot_do_is_refused_at_start(
    args: list[str], message: str, tmp_path: Path
) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "meshup.cli", "serve", "--port", "1", *args],
        cwd=tmp_path,
        env={**os.environ, "MESHUP_DATABASE_URL": f"sqlite:///{tmp_path / 'meshup.db'}"},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "meshup.db").exists()  # refused before touching anything
