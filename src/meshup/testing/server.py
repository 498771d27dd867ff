"""A real ``meshup serve --ephemeral`` process on a free loopback port, controlled over HTTP."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from meshup.control.client import ControlClient
from meshup.seed.schema import load_seed

DEFAULT_SEED = Path(__file__).with_name("default_seed.yaml")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where and as whom to call: the seed's first root user with an access key."""

    endpoint: str
    domain: str
    project_name: str
    project_id: str
    user: str
    password: str | None
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(endpoint={self.endpoint!r}, project_id={self.project_id!r}, user={self.user!r})"


def credentials_from_seed(seed: str | Path, endpoint: str) -> Credentials:
    parsed = load_seed(seed)
    for account in parsed.accounts:
        projects = [project for project in account.projects if project.id]
        for user in account.users:
            if user.root and user.access_keys and projects:
                key = user.access_keys[0]
                return Credentials(
                    endpoint=endpoint,
                    domain=account.name,
                    project_name=projects[0].name,
                    project_id=str(projects[0].id),
                    user=user.name,
                    password=user.password,
                    access_key=key.ak,
                    secret_key=key.sk,
                )
    raise LookupError(f"{seed}: no account with a project id and a root user with an access key")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MeshupServer:
    """``with MeshupServer(seed="seed.yaml") as server:`` — ``server.url``, ``server.control``,
    ``server.credentials``; the database and key are deleted when the server stops."""

    def __init__(
        self,
        seed: str | Path | None = DEFAULT_SEED,
        *,
        clock: str = "manual",
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.seed = Path(seed) if seed is not None else None
        self.clock = clock
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.port = 0
        self.url = ""
        self.token = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None
        self._control: ControlClient | None = None
        self._logdir = Path(tempfile.mkdtemp(prefix="meshup-server-log-"))
        self.log_path = self._logdir / "server.log"

    @property
    def control(self) -> ControlClient:
        assert self._control is not None, "the server is not running"
        return self._control

    @property
    def credentials(self) -> Credentials:
        if self.seed is None:
            raise LookupError("started without a seed: there are no known credentials")
        return credentials_from_seed(self.seed, self.url)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> MeshupServer:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "meshup.cli", "serve", "--ephemeral", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--clock", self.clock, "--control-api", "on"]
        args += ["--processes", "1"]  # the control API acts on one process, whatever MESHUP_PROCESSES says
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        args += list(self.extra_args)
        env = {**os.environ, "MESHUP_CONTROL_TOKEN": self.token, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                args, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_healthy()
        self._control = ControlClient(self.url, self.token)
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                code = self._process.poll()
                if code is not None:
                    output = self.log()
                    self.stop()
                    raise RuntimeError(f"meshup serve exited with {code}:\n{output}")
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        output = self.log()
        self.stop()
        raise RuntimeError(f"meshup serve did not become healthy in {self.startup_timeout}s:\n{output}")

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        shutil.rmtree(self._logdir, ignore_errors=True)

    def __enter__(self) -> MeshupServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
