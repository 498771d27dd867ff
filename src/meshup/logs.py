"""Log set-up shared by the commands: messages on stderr, the access log alone on stdout."""

from __future__ import annotations

import logging
import sys

ACCESS_LOGGER = "meshup.access"


def configure_logging(level: str) -> None:
    """Idempotent: every serving process calls it, a single-process server twice."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False
    access.setLevel(logging.INFO)
    if not any(getattr(handler, "meshup_access", False) for handler in access.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.meshup_access = True  # type: ignore[attr-defined]
        access.addHandler(handler)
