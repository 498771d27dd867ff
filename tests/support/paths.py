"""Where the shared contract folder is: next to the repository root, or MESHUP_SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    configured = os.environ.get("MESHUP_SHARED_DIR")
    return Path(configured) if configured else REPO.parent / "shared"
