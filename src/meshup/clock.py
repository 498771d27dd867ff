"""Time as an injectable dependency, so tests and the engine can control it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests, deterministic engine runs)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, instant: datetime) -> None:
        self._now = instant


class ControlledClock:
    """The simulated clock of a server: the engine and simulated clusters read it, IAM does not.

    ``system`` mode follows the wall clock at ``speed`` times real time, from wherever the clock
    stood when the mode was set (so switching modes never moves time backwards); ``manual`` mode
    moves only through :meth:`advance` and :meth:`set`.
    """

    def __init__(
        self,
        *,
        manual: bool = False,
        speed: float = 1.0,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._manual = manual
        self._speed = speed
        self._anchor_wall = wall()
        self._anchor = self._anchor_wall

    @property
    def manual(self) -> bool:
        return self._manual

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> datetime:
        if self._manual:
            return self._anchor
        return self._anchor + (self._wall() - self._anchor_wall) * self._speed

    def configure(self, *, manual: bool, speed: float | None = None, now: datetime | None = None) -> None:
        """Switch mode (and speed, and the current instant); the instant must not go backwards."""
        with self._lock:
            current = self._now_locked()
            if now is not None and now < current:
                raise ValueError("the clock cannot move backwards")
            if speed is not None and not speed >= 0:
                raise ValueError("speed must be zero or more")
            self._manual = manual
            self._speed = self._speed if speed is None else speed
            self._anchor = now or current
            self._anchor_wall = self._wall()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock cannot move backwards")
        with self._lock:
            self._anchor = self._now_locked() + timedelta(seconds=seconds)
            self._anchor_wall = self._wall()

    def set(self, instant: datetime) -> None:
        self.configure(manual=self._manual, now=instant)


class JumpableClock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...

    def set(self, instant: datetime) -> None: ...


def jumpable(clock: Clock) -> JumpableClock | None:
    """The clock as one a deterministic run may move forward, or None (it follows real time)."""
    if isinstance(clock, FixedClock) or (isinstance(clock, ControlledClock) and clock.manual):
        return clock
    return None
