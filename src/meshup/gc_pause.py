"""No cyclic garbage collection while a server starts.

Importing and wiring the application make a few hundred thousand long-lived objects, and the
collections they trigger were a sixth of the start-up's CPU time; almost none of it is garbage.
"""

from __future__ import annotations

import gc


def pause_gc() -> None:
    gc.disable()


def resume_gc() -> None:
    """Freeze what start-up built (it lives as long as the process, so later collections need
    not walk it) and collect as usual again."""
    gc.freeze()
    gc.enable()
