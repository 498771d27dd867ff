"""``meshup serve --ephemeral``: a throw-away SQLite database and key file, removed at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def ephemeral_store() -> tuple[str, Path]:
    """A database URL and key file in a new private directory deleted when the process exits
    (normally or on SIGTERM/SIGINT, which the server turns into a normal exit)."""
    directory = Path(tempfile.mkdtemp(prefix="meshup-ephemeral-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return f"sqlite:///{directory / 'meshup.db'}", directory / "meshup.key"
