"""Real ``meshup serve`` and ``meshup worker`` processes for crash tests: start, SIGKILL, restart.

Every incarnation of a process writes its own log file, so a worker's owner id (printed when it
starts) and the output of a killed process stay readable after it is replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from meshup.store.db import normalise_url, sqlite_path
from tests.support.server import free_port

_OWNER_LINE = re.compile(r"meshup worker (\S+): \d+ threads")


def meshup_env(database_url: str, master_key: str, *, lease_seconds: float, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MESHUP_DATABASE_URL": database_url,
            "MESHUP_MASTER_KEY": master_key,
            "MESHUP_LEASE_SECONDS": str(lease_seconds),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class MeshupProcess:
    """One role (an API server on a fixed port, or a worker), restartable after a kill."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.workdir = workdir
        self.incarnation = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self) -> MeshupProcess:
        assert not self.alive, f"{self.name} is already running"
        self.incarnation += 1
        self.log_path = self.workdir / f"{self.name}-{self.incarnation}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meshup.cli", *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL and reap (a no-op when not running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def all_logs(self) -> str:
        parts = []
        for number in range(1, self.incarnation + 1):
            path = self.workdir / f"{self.name}-{number}.log"
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def owner_if_started(self) -> str | None:
        found = _OWNER_LINE.search(self.log())
        return found.group(1) if found else None

    def owner(self, timeout: float = 30.0) -> str:
        """A worker's lease owner id, from its start-up line (waits until it has started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _OWNER_LINE.search(self.log())
            if found:
                return found.group(1)
            if not self.alive:
                raise RuntimeError(f"{self.name} exited before it started:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {timeout}s:\n{self.log()}")


class ApiProcess(MeshupProcess):
    """``meshup serve --no-worker`` on a port that stays the same across restarts."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, *, seed: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seed = seed
        super().__init__(name, [], env, workdir)

    def start(self) -> MeshupProcess:
        self.args = ["serve", "--no-worker", "--port", str(self.port)]
        if self.seed is not None and self.incarnation == 0:
            self.args += ["--seed", str(self.seed)]  # applied once: a restart must not re-seed
        return super().start()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy within {timeout}s:\n{self.log()}")


def worker_process(
    name: str, env: dict[str, str], workdir: Path, *, threads: int, sim_speed: float
) -> MeshupProcess:
    args = ["worker", "--threads", str(threads), "--sim-speed", str(sim_speed)]
    return MeshupProcess(name, args, env, workdir)


@contextmanager
def killing_all(processes: list[MeshupProcess]) -> Iterator[list[MeshupProcess]]:
    """Whatever happens, no process outlives the test (the list may grow inside the block)."""
    try:
        yield processes
    finally:
        for process in processes:
            with contextlib.suppress(Exception):  # best effort: the next one must still be killed
                process.kill()


class JobsReader:
    """Plain autocommit reads of the database the processes share (each read sees the latest commit)."""

    def __init__(self, database_url: str) -> None:
        path = sqlite_path(database_url)
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        if path is not None:
            self._sqlite = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        else:
            dsn = make_url(normalise_url(database_url)).set(drivername="postgresql")
            self._pg = psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """``sql`` with ``?`` placeholders."""
        if self._pg is not None:
            return list(self._pg.execute(sql.replace("?", "%s").encode(), params).fetchall())
        assert self._sqlite is not None
        return list(self._sqlite.execute(sql, params).fetchall())

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()
