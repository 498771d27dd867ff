"""A mesh's live region as server-sent events: the API's live job events, rendered for the page.

``GET /console/meshes/{mesh_id}/live/events`` (signed in by the session cookie, as every console
page) reads the mesh's state through the API, then opens the API's event stream of the job of the
step that runs (``GET /v1/{project_id}/mesh-job/{job_id}`` with ``Accept: text/event-stream``,
in-process, with the user's token: the same authentication and IAM decisions as for any client of
the API, each change authorised again). It sends:

- ``live`` whenever the job's tree changes: the region's body, rendered from the job document the
  API sent and the mesh and task read again; and, while nothing changes, once a second if the body
  differs (the durations of running nodes move on, as they did when the region polled);
- ``end`` once, then closes: the whole region in its final state when the job has ended, or a
  polling region that hands over when the stream cannot go on (not signed in, the mesh not
  readable, the job refused by the API, the API's stream closed early, anything unexpected).

What a region does with these events, and when it polls instead, is decided in ``console.live``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from meshup.console.api import ApiReply, EventStream, StreamBlock, segment
from meshup.console.live import BODY_EVENT, END_EVENT, Mode, final_mode
from meshup.console.mesh_state import MeshState, mesh_url, read_mesh, read_tree
from meshup.console.pages import SECURITY_HEADERS
from meshup.console.views import TreeRow, tree_rows
from meshup.console.visit import SignedOut, Visit

log = logging.getLogger("meshup.console")

TICK_SECONDS = 1.0  # how often running durations are brought up to date
KEEPALIVE_SECONDS = 15.0  # a comment when nothing was sent for this long (as the API does)
TERMINAL = ("Success", "Failed")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_event(name: str, text: str) -> bytes:
    """One event; every line of ``text`` becomes a ``data:`` field (a browser joins them again)."""
    fields = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text))
    return f"event: {name}\n{fields}\n".encode()


def _terminal(job: Any) -> bool:
    status = job.get("status") if isinstance(job, dict) else None
    return isinstance(status, dict) and status.get("phase") in TERMINAL


class _Refused(Exception):
    """The API would not show the mesh (any more): its message."""


TICK = StreamBlock("tick", "")  # no change within a tick (compared by identity)


class LiveStream(Response):
    media_type = "text/event-stream"

    def __init__(self, visit: Visit, mesh_id: str) -> None:
        # Not Response.__init__: it would add "content-length: 0" for the absent body.
        self.status_code = 200
        self.background = None
        self.init_headers({**SECURITY_HEADERS, "x-accel-buffering": "no"})
        self.visit = visit
        self.mesh_id = mesh_id
        self._send: Send | None = None
        self._last_sent = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()
        follow = loop.create_task(self._follow())
        gone = loop.create_task(_disconnect(receive))
        try:
            await asyncio.wait((follow, gone), return_when=asyncio.FIRST_COMPLETED)
            left = gone.done()
        finally:
            for task in (follow, gone):
                task.cancel()
            await asyncio.gather(follow, gone, return_exceptions=True)
        if not left:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _emit(self, chunk: bytes) -> None:
        assert self._send is not None
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self._last_sent = asyncio.get_running_loop().time()

    async def _follow(self) -> None:
        try:
            region = await self._region()
        except SignedOut:
            region = self._hand_over("Signed out")
        except _Refused as refused:
            region = self._hand_over(str(refused))
        except Exception:
            log.exception("the live stream of mesh %s failed", self.mesh_id)
            region = self._hand_over("The live view stopped")
        await self._emit(sse_event(END_EVENT, region))

    def _hand_over(self, notice: str) -> str:
        """A polling region: its fragment URL knows what to do (sign in, show why, retry)."""
        live_url = f"{mesh_url(self.mesh_id)}/live"
        return self.visit.html("_retry.html", live_url=live_url, live_mode=Mode.POLLING, notice=notice)

    async def _state(self) -> MeshState:
        state = await read_mesh(self.visit, self.mesh_id, self.visit.task_index())
        if isinstance(state, ApiReply):
            raise _Refused(state.message)
        return state

    async def _region(self) -> str:
        """Follow the job of the step that runs, sending its changes; the region to end with."""
        if self.visit.session is None:
            return self._hand_over("Signed out")
        state = await self._state()
        followed = state.job_id
        if not (state.active and followed):
            return await self._final(followed, None, None, state)
        async with self.visit.api.stream(f"/v1/{self.visit.project}/mesh-job/{segment(followed)}") as events:
            refusal = await events.open()
            if refusal is not None:
                if refusal.signed_out:
                    raise SignedOut(refusal)
                return await self._final(followed, None, refusal.message)
            job, error = await self._changes(events, state)
        return await self._final(followed, job, error)

    async def _changes(self, events: EventStream, state: MeshState) -> tuple[Any, str | None]:
        """Send the body at each change until the job or the API's stream ends; the last job
        document, and the API's error if it ended the stream with one."""
        loop = asyncio.get_running_loop()
        job: Any = None
        sent = ""
        while True:
            try:
                block = await events.next(TICK_SECONDS)
            except TimeoutError:
                block = TICK
            if block is None:
                return job, None  # closed before the job ended (the API's time limit, the token's end)
            if block.event == "error":
                return job, ApiReply(0, {}, _json(block.data)).message
            if block.event == "message":
                if job is not None:  # the first document comes at once: the state was just read
                    state = await self._state()
                job = _json(block.data)
                if _terminal(job):
                    return job, None
            elif block is not TICK or job is None:
                continue  # a comment (keep-alive) or the advised reconnection delay
            body = self.visit.html("_live_body.html", **state.context(Mode.STREAM, tree=tree_rows(job)))
            if body != sent:
                sent = body
                await self._emit(sse_event(BODY_EVENT, body))
            elif loop.time() - self._last_sent >= KEEPALIVE_SECONDS:
                await self._emit(b": keep-alive\n\n")

    async def _final(self, followed: str, job: Any, error: str | None, state: MeshState | None = None) -> str:
        """The region as it is now (``job``: the last document of the job followed; ``state``:
        the mesh's, if just read)."""
        state = state or await self._state()
        tree: list[TreeRow] | None
        if job is not None and state.job_id == followed:
            tree = tree_rows(job)
        else:
            tree, refused = await read_tree(self.visit, state.job_id)
            error = error or refused
        mode = final_mode(state.active, state.job_id, followed)
        return self.visit.html("_live.html", **state.context(mode, tree=tree, tree_error=error))


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
