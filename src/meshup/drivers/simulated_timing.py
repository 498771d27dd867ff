"""How long simulated cluster operations take (``--sim-speed`` scales them; 0 = instant)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimTiming:
    """Simulated durations in seconds (before the speed factor). speed 0 = no simulated time."""

    speed: float = 1.0
    control_plane_ready: float = 6.0  # an installed revision becomes ready
    restart_batch: float = 2.0  # a batch of workloads restarts and gets ready
    check: float = 0.3  # a fresh look at the cluster for a check
    gateway: float = 1.0  # gateways of a revision are created or removed
    uninstall: float = 1.0  # a control-plane revision is removed

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds * self.speed)
