"""A small thread pool with a bounded queue that refuses work instead of letting it pile up.

Password hashing is slow and memory-hungry by design (argon2: 64 MiB for each check in
progress); run unbounded, a flood of logins takes every core and gigabytes of memory. Here at
most ``workers`` checks run at once and at most ``queue`` wait, and no more than would start
within ``max_wait`` seconds at the pace tasks have been taking (when the machine is busy, a
long queue would only make clients time out); anything beyond is refused at once with an
estimate of when to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class PoolBusy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"busy; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class BoundedPool:
    def __init__(
        self,
        workers: int,
        queue: int,
        *,
        name: str = "meshup-pool",
        niceness: int = 0,
        max_wait: float = math.inf,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a pool needs at least one worker and a queue of 0 or more")
        self.workers = workers
        self.limit = workers + queue
        self.max_wait = max_wait
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=_lower_priority, initargs=(niceness,)
        )
        self._now = monotonic
        self._lock = threading.Lock()
        self._admitted = 0
        self._mean_seconds = 0.0  # moving average of one task's run time, for Retry-After

    @property
    def admitted(self) -> int:
        """Tasks running or waiting."""
        return self._admitted

    def admit(self) -> None:
        """Reserve a place, or raise PoolBusy; every admit is followed by one ``submit``/``release``."""
        with self._lock:
            waves_ahead = self._admitted // self.workers  # 0: a worker is free
            if self._admitted >= self.limit or waves_ahead * self._mean_seconds > self.max_wait:
                # When the tasks ahead of a newcomer would have drained, at least a second.
                waves = math.ceil(self._admitted / self.workers)
                raise PoolBusy(max(1.0, waves * self._mean_seconds))
            self._admitted += 1

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the pool in the place reserved by ``admit``."""

        def timed() -> T:
            started = self._now()
            try:
                return fn()
            finally:
                elapsed = self._now() - started
                with self._lock:
                    self._mean_seconds = (
                        elapsed if not self._mean_seconds else 0.8 * self._mean_seconds + 0.2 * elapsed
                    )

        try:
            future = self._executor.submit(timed)
        except BaseException:
            self.release()
            raise
        future.add_done_callback(lambda _f: self.release())
        return future

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn`` on the pool, awaited; PoolBusy at once when the pool is full."""
        self.admit()
        return await asyncio.wrap_future(self.submit(fn))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lower_priority(niceness: int) -> None:
    """Run this worker thread (and the threads it starts) at a lower CPU priority: when the pool
    is saturated, the rest of the process still gets the processor first. Linux sets the nice
    value per thread; elsewhere this is a no-op."""
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
