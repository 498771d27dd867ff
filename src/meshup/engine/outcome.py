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
    """Not finished yet (a revision becoming ready, a batch restarting): run again in ``seconds``.

    ``state`` is merged into the leaf's payload so the next run knows where it got to.
    """

    seconds: float
    state: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Fail | Wait


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything a step function may read; it acts on clusters only through the driver."""

    job_id: str
    job_type: str
    target: str
    payload: dict[str, Any]  # cluster, namespace, revisions, versions, workloads, ... (see upgrades.plans)
    now: datetime
