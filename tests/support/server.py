"""A real ``meshup serve`` process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    port: int
    database_url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    workdir: Path,
    database_url: str,
    *,
    seed: Path | None = None,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> ServerProcess:
    port = free_port()
    env = dict(os.environ)
    env.update({"MESHUP_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    env.update(extra_env or {})
    args = [sys.executable, "-m", "meshup.cli", "serve", "--port", str(port)]
    if seed is not None:
        args += ["--seed", str(seed)]
    args += extra_args or []
    log_path = workdir / f"server-{port}.log"
    log_handle = log_path.open("wb")
    process = subprocess.Popen(args, cwd=workdir, env=env, stdout=log_handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(url, port, database_url, workdir, process, log_path, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meshup serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"meshup serve did not become healthy in {timeout}s:\n{server.log()}")


def serve_backend(
    backend: str,
    tmp_path_factory: Any,
    name: str,
    seed: Path,
    args: list[str],
) -> Iterator[ServerProcess]:
    """A fixture body: a server on a fresh database of ``backend``, stopped afterwards."""
    from tests.support.databases import database_url

    workdir = tmp_path_factory.mktemp(f"{name}-{backend}")
    with database_url(backend, workdir) as url:
        process = start_server(workdir, url, seed=seed, extra_args=args)
        try:
            yield process
        finally:
            process.stop()
