"""What running one leaf job produced, and what a step function is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Done:
    """The leaf succeeded; ``result`` is stored with it."""

    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fail:
    """The leaf failed for a reason the user can act on (names the cluster/namespace/workload)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Not finished yet (a revision becoming ready, a batch restarting): run again later.

    ``state`` is merged into the leaf's payload so the next run knows where it got to.
    """

    seconds: float
    note: str = ""
    state: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Fail | Wait


@dataclass(frozen=True, slots=True)
class SimTiming:
    """Simulated durations in seconds (before the speed factor). speed 0 = no simulated time."""

    speed: float = 1.0
    control_plane_ready: float = 6.0
    restart_batch: float = 2.0
    check: float = 0.3
    gateway: float = 1.0
    uninstall: float = 1.0

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds * self.speed)


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything a step function may read; it acts on clusters only through the driver."""

    job_id: str
    job_type: str
    target: str
    payload: dict[str, Any]  # cluster, namespace, revisions, versions, workloads, ... (see upgrades.plans)
    attempt: int
    now: datetime
    timing: SimTiming
