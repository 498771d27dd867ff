"""Per-source-address budget of failed password logins (token buckets, in process memory).

Each address may fail ``capacity`` logins in a burst; the budget refills continuously so that
``capacity`` more are allowed per ``period``. An attempt is charged before its password is
checked and refunded when it succeeds, so a flood of concurrent attempts cannot overshoot the
budget while its hashes are still running.

In-process on purpose: the budget protects this process's CPU and the database from one noisy
source, and each process throttles what it sees (N processes behind a balancer allow N budgets).
Guessing one user's password is bounded by the per-user lockout, which lives in the database and
holds across processes.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_ADDRESSES = 65_536  # tracked sources; beyond it the least recently seen one is forgotten


def address_key(host: str) -> str:
    """The unit a budget belongs to: an IPv4 address, or an IPv6 /64 (what one host usually gets)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class AddressThrottle:
    """``take`` before a login, ``refund`` after a successful one. ``capacity`` 0 turns it off."""

    def __init__(
        self,
        capacity: int,
        period_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.capacity = capacity
        self.rate = capacity / period_seconds if period_seconds > 0 else math.inf  # tokens per second
        self._now = monotonic
        self._max_addresses = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, host: str) -> float:
        """0 when the attempt may go ahead (one failure charged), else seconds until it may."""
        if not self.enabled:
            return 0.0
        key = address_key(host)
        with self._lock:
            now = self._now()
            bucket = self._refilled(key, now)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def refund(self, host: str) -> None:
        """The attempt did not fail (it succeeded, or never ran): give its charge back."""
        if not self.enabled:
            return
        key = address_key(host)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.tokens = min(float(self.capacity), bucket.tokens + 1)

    def tracked(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.capacity), updated=now)
            self._buckets[key] = bucket
            self._forget_idle(now)
        else:
            bucket.tokens = min(float(self.capacity), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        return bucket

    def _forget_idle(self, now: float) -> None:
        """Drop the least recently seen sources once they are back to a full budget (they are
        indistinguishable from new ones), and any beyond the size limit, so memory stays bounded."""
        while len(self._buckets) > 1:
            key, oldest = next(iter(self._buckets.items()))
            full = oldest.tokens + (now - oldest.updated) * self.rate >= self.capacity
            if not full and len(self._buckets) <= self._max_addresses:
                break
            del self._buckets[key]
