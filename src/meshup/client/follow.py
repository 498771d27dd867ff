"""Follow a mesh job until a terminal phase: a server-sent event stream if the server offers one,
polling otherwise.

Each yielded item is the whole job document (the root and its subtree) as the server rendered
it; polling may yield the same document twice, so consumers compare.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from meshup.client.api import EVENT_STREAM, Api
from meshup.client.errors import ConnectionFailed, RequestTimedOut, WaitTimedOut
from meshup.client.sse import parse_events

TERMINAL = ("Success", "Failed")
# A stream stays quiet while nothing changes; after this long without a byte it is opened again,
# which also notices a connection that died without a word.
STREAM_IDLE_SECONDS = 60.0


def phase(doc: dict[str, Any]) -> str:
    return str((doc.get("status") or {}).get("phase") or "")


def is_terminal(doc: dict[str, Any]) -> bool:
    return phase(doc) in TERMINAL


def _job_document(data: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("status"), dict) else None


class Follower:
    """The state of one follow: the deadline, the last event id, whether the server streams."""

    def __init__(
        self,
        api: Api,
        job_id: str,
        *,
        interval: float = 1.0,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.job_id = job_id
        self.interval = interval
        self.deadline = None if timeout is None else clock() + timeout
        self.clock = clock
        self.sleep = sleep
        self.streaming = True  # until the server answers an event-stream request with JSON
        self.last_event_id: str | None = None

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - self.clock()
        if left <= 0:
            raise WaitTimedOut(f"job {self.job_id} did not finish in time")
        return left

    def _timed_out(self) -> WaitTimedOut | None:
        if self.deadline is not None and self.clock() >= self.deadline:
            return WaitTimedOut(f"job {self.job_id} did not finish in time")
        return None

    def _stream(self) -> Iterator[dict[str, Any]]:
        """One event-stream request; yields documents, or the JSON answer of a server without streams."""
        remaining = self._remaining()
        idle = STREAM_IDLE_SECONDS if remaining is None else min(remaining, STREAM_IDLE_SECONDS)
        with self.api.job_events(self.job_id, last_event_id=self.last_event_id, timeout=idle) as response:
            if not response.headers.get("content-type", "").startswith(EVENT_STREAM):
                self.streaming = False
                response.read()
                yield dict(response.json())
                return
            for event in parse_events(response.iter_lines()):
                self.last_event_id = event.id
                doc = _job_document(event.data)
                if doc is not None:
                    yield doc

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                if self.streaming:
                    for doc in self._stream():
                        yield doc
                        if is_terminal(doc):
                            return
                else:
                    doc = self.api.get_job(self.job_id, timeout=self._remaining())
                    yield doc
                    if is_terminal(doc):
                        return
            except (RequestTimedOut, httpx.TimeoutException) as exc:
                expired = self._timed_out()
                if expired is not None:
                    raise expired from None
                if not self.streaming:
                    raise ConnectionFailed(f"{self.api.profile.endpoint} stopped answering") from exc
            except httpx.HTTPError as exc:  # a stream cut mid-way: ask again
                if not self.streaming:
                    raise ConnectionFailed(f"{self.api.profile.endpoint}: {exc}") from None
            # Polling, or a stream that ended before a terminal phase: wait a little, then ask again.
            remaining = self._remaining()
            self.sleep(self.interval if remaining is None else min(self.interval, remaining))


def follow(
    api: Api, job_id: str, *, interval: float = 1.0, timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    return iter(Follower(api, job_id, interval=interval, timeout=timeout))
