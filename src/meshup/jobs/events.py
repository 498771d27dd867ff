"""Live job events: the mesh-job GET as a server-sent event stream (a meshup extension).

A client that sends ``Accept: text/event-stream`` to ``GET /v1/{project_id}/mesh-job/{job_id}``
gets the job document (the bytes the plain GET returns) as an event whenever a node of its tree
changes; the stream ends after the job reaches a terminal phase.

- The request is authenticated and authorised as the GET is; errors before the first byte are the
  GET's JSON errors. Each change is read again through ``JobService.document``, so the caller is
  authorised again (a policy condition, a deleted job). When the IAM epoch moved (any user, key or
  policy changed) the credential is verified again as a new request would be; a failure ends the
  stream with an ``error`` event carrying the error envelope. A signed request older than the
  clock-skew window then fails too: the client reconnects with a fresh signature.
- ``id:`` is the tree's change marker (``store.hot.HotReader.marker``), read before the document,
  so a document is never labelled newer than it is; a client that reconnects with
  ``Last-Event-ID`` gets the document again only if the tree changed since. A job that has ended
  and whose marker the client already holds is answered ``204 No Content``, which tells an
  ``EventSource`` to stop reconnecting.
- One poller per job and process reads the marker (one indexed query) every ``poll`` seconds for
  all streams of that job, so a change made by any process shows within about that long.
- The number of open streams per process is bounded (beyond: 503), and each stream closes after
  ``max_seconds`` (clients reconnect with ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

import orjson
from starlette.types import Receive, Scope, Send

from meshup.errors import Unavailable
from meshup.http.errors import error_response
from meshup.http.requests import incoming_without_body, note_caller, request_id
from meshup.http.runtime import Runtime
from meshup.iam.service import Caller, Credential, IncomingRequest
from meshup.store.hot import HotReader

log = logging.getLogger("meshup.events")

EVENT_STREAM = b"text/event-stream"
TERMINAL = (b"Success", b"Failed")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    poll_seconds: float = 0.5
    keepalive_seconds: float = 15.0
    max_seconds: float = 3600.0
    max_streams: int = 1000
    retry_ms: int = 2000

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> StreamSettings:
        """``MESHUP_SSE_*`` variables (tuning knobs of this extension; defaults suit production)."""
        env = dict(os.environ if env is None else env)
        default = cls()
        return cls(
            poll_seconds=float(env.get("MESHUP_SSE_POLL_SECONDS", default.poll_seconds)),
            keepalive_seconds=float(env.get("MESHUP_SSE_KEEPALIVE_SECONDS", default.keepalive_seconds)),
            max_seconds=float(env.get("MESHUP_SSE_MAX_SECONDS", default.max_seconds)),
            max_streams=int(env.get("MESHUP_SSE_MAX_STREAMS", default.max_streams)),
        )


def wants_events(scope: Scope) -> bool:
    """Whether the request asks for an event stream (only then is this module involved)."""
    for name, value in scope["headers"]:  # noqa: SIM110 (a loop, not any(genexpr): every GET passes here)
        if name == b"accept" and EVENT_STREAM in value:
            return True
    return False


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1").strip())
    return None


def _is_terminal(body: bytes) -> bool:
    status = orjson.loads(body).get("status") or {}
    return str(status.get("phase", "")).encode() in TERMINAL


class _Watch:
    """The marker of one job as last polled, and the streams waiting for it to change."""

    def __init__(self, marker: str | None) -> None:
        self.marker = marker
        self.changed = asyncio.Event()
        self.streams = 0
        self.task: asyncio.Task[None] | None = None


class MarkerPoller:
    """One marker query per job and interval, whatever the number of streams of that job."""

    def __init__(self, reader: HotReader, interval: float) -> None:
        self.reader = reader
        self.interval = interval
        self._watches: dict[str, _Watch] = {}

    def join(self, job_id: str, marker: str | None) -> _Watch:
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch(marker)
            watch.task = asyncio.get_running_loop().create_task(self._poll(job_id, watch))
        watch.streams += 1
        return watch

    def leave(self, job_id: str, watch: _Watch) -> None:
        watch.streams -= 1
        if watch.streams == 0 and self._watches.get(job_id) is watch:
            del self._watches[job_id]
            if watch.task is not None:
                watch.task.cancel()

    async def _poll(self, job_id: str, watch: _Watch) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                marker = await self.reader.marker(job_id)
            except Unavailable:
                continue  # the streams stay open (keep-alives flow) until the database answers
            if marker != watch.marker:
                watch.marker = marker
                changed, watch.changed = watch.changed, asyncio.Event()
                changed.set()


class JobEvents:
    """The event streams of one process."""

    def __init__(self, rt: Runtime, settings: StreamSettings | None = None) -> None:
        self.rt = rt
        self.settings = settings or StreamSettings.from_environment()
        self.poller = MarkerPoller(rt.jobs.reader, self.settings.poll_seconds)
        self.open_streams = 0

    async def answer(self, scope: Scope, receive: Receive, send: Send, project_id: str, job_id: str) -> None:
        if self.open_streams >= self.settings.max_streams:
            error = Unavailable("too many open event streams; retry shortly")
            await self._refuse(error, scope, receive, send)
            return
        self.open_streams += 1
        try:
            await self._answer(scope, receive, send, project_id, job_id)
        finally:
            self.open_streams -= 1

    async def _refuse(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            exc, path=scope["path"], request_id=request_id(scope), metrics=self.rt.metrics
        )
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, project_id: str, job_id: str) -> None:
        stream = _Stream(self.rt, scope, project_id, job_id)
        try:
            await stream.authenticate()
            marker = await self.rt.jobs.reader.marker(job_id)
            body = await stream.document()
        except Exception as exc:  # before the first byte: the GET's JSON errors
            await self._refuse(exc, scope, receive, send)
            return
        last_event_id = _header(scope, b"last-event-id")
        terminal = _is_terminal(body)
        if terminal and marker is not None and last_event_id == marker:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),  # proxies must not hold events back
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": b"retry: %d\n\n" % self.settings.retry_ms,
                "more_body": True,
            }
        )
        if last_event_id != marker or marker is None:
            await send({"type": "http.response.body", "body": _event(marker, body), "more_body": True})
        if not terminal:
            watch = self.poller.join(job_id, marker)
            try:
                await self._follow(stream, watch, body, receive, send)
            finally:
                self.poller.leave(job_id, watch)
        await send({"type": "http.response.body", "body": b""})

    async def _follow(
        self, stream: _Stream, watch: _Watch, sent: bytes, receive: Receive, send: Send
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_seconds
        if stream.expires_in is not None:
            deadline = min(deadline, loop.time() + stream.expires_in)
        disconnected = loop.create_task(_disconnect(receive))
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return
                changed = loop.create_task(watch.changed.wait())
                done, _ = await asyncio.wait(
                    (changed, disconnected),
                    timeout=min(left, self.settings.keepalive_seconds),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
                if disconnected in done:
                    return
                marker = watch.marker
                if changed not in done and not await stream.iam_changed():
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                try:
                    body = await stream.document()
                except Exception as exc:  # revoked, no longer allowed, deleted: say why, then end
                    await send(
                        {"type": "http.response.body", "body": stream.error_event(exc), "more_body": True}
                    )
                    return
                if body != sent:
                    sent = body
                    await send(
                        {"type": "http.response.body", "body": _event(marker, body), "more_body": True}
                    )
                    if _is_terminal(body):
                        return
        finally:
            disconnected.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await disconnected


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _event(marker: str | None, body: bytes) -> bytes:
    # The document is one line of JSON (orjson writes no newlines), so one data field holds it.
    head = b"id: %s\n" % marker.encode() if marker is not None else b""
    return head + b"data: " + body + b"\n\n"


class _Stream:
    """The caller of one stream, verified again whenever the IAM epoch moves."""

    def __init__(self, rt: Runtime, scope: Scope, project_id: str, job_id: str) -> None:
        self.rt = rt
        self.scope = scope
        self.project_id = project_id
        self.job_id = job_id
        self.request: IncomingRequest = incoming_without_body(scope)
        self.credential: Credential | None = None
        self.caller: Caller | None = None
        self.epoch = -1
        self.expires_in: float | None = None

    async def authenticate(self) -> None:
        identity, reader = self.rt.identity, self.rt.jobs.reader
        if self.credential is None:
            self.credential = identity.presented(self.request)
        epoch = await reader.epoch()
        self.caller = await identity.authenticate_at(epoch, self.credential, self.project_id, reader.off_loop)
        self.epoch = epoch
        note_caller(self.scope, self.caller)
        if self.caller.token is not None:
            # A token is not re-read while the epoch stays; the stream ends when the token does.
            self.expires_in = (self.caller.token.expires_at - self.rt.clock.now()).total_seconds()

    async def iam_changed(self) -> bool:
        return await self.rt.jobs.reader.epoch() != self.epoch

    async def document(self) -> bytes:
        if self.caller is None or await self.iam_changed():
            await self.authenticate()
        assert self.caller is not None
        return await self.rt.jobs.document(self.caller, self.project_id, self.job_id, self.request.source_ip)

    def error_event(self, exc: Exception) -> bytes:
        response = error_response(
            exc, path=self.scope["path"], request_id=request_id(self.scope), metrics=self.rt.metrics
        )
        return b"event: error\ndata: " + bytes(response.body) + b"\n\n"
