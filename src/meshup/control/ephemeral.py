"""``meshup serve --ephemeral``: a throw-away SQLite database and key file, removed at exit."""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
from pathlib import Path


def ephemeral_store() -> tuple[str, Path]:
    """A database URL and key file in a new private directory deleted when the process exits
    (normally, or on SIGTERM or SIGINT)."""
    directory = Path(tempfile.mkdtemp(prefix="meshup-ephemeral-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    # The server re-raises the SIGTERM it stopped on once it has shut down; by default that ends
    # the process without running atexit, so turn it into a normal exit instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return f"sqlite:///{directory / 'meshup.db'}", directory / "meshup.key"


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
