"""The console's only way into meshup: its public HTTP API, called in-process over ASGI.

Every call goes through the whole application (request ids, access log, metrics, the mesh-job
fast path, authentication, IAM, validation) exactly as an outside client's would, with the signed-in
user's token and the browser's address, so the console can do no more and no less than the API.
An event stream (the live job events) is read block by block while the API sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson
from starlette.types import ASGIApp, Message

from meshup.client.sse import parse_events

USER_AGENT = b"meshup-console"
EVENT_STREAM = "text/event-stream"
CLOSE_SECONDS = 5.0  # how long a stream left by the console may take to notice and end


def segment(value: str) -> str:
    """One path segment, percent-encoded (ids come from the browser's URL)."""
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class ApiReply:
    status: int
    headers: dict[str, str]
    body: Any  # the parsed JSON document, or None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The error text of whichever envelope answered (service, gateway or Keystone)."""
        body = self.body if isinstance(self.body, dict) else {}
        keystone = body.get("error")
        for text in (
            body.get("errorMsg"),
            body.get("error_msg"),
            keystone.get("message") if isinstance(keystone, dict) else None,
        ):
            if isinstance(text, str) and text:
                return text
        return f"the API answered {self.status}"

    @property
    def signed_out(self) -> bool:
        """The token no longer opens this project: the person has to sign in again."""
        return self.status == 401

    @property
    def expired(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("error_code") == "APIGW.0307"


class ApiClient:
    """Calls of one console request: the caller's token, address and host, the full ASGI app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: tuple[str, int] | None,
        host: str,
        scheme: str,
        token: str | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.host = host
        self.scheme = scheme
        self.token = token

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> ApiReply:
        return await self.call("GET", path, headers=headers)

    async def post(self, path: str, body: Any, *, token: bool = True) -> ApiReply:
        return await self.call("POST", path, body=body, with_token=token)

    async def put(self, path: str, body: Any) -> ApiReply:
        return await self.call("PUT", path, body=body)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        with_token: bool = True,
    ) -> ApiReply:
        payload = None if body is None else orjson.dumps(body)
        scope = self._scope(method, path, payload, headers, with_token)
        return await _exchange(self.app, scope, payload or b"")

    def stream(self, path: str) -> EventStream:
        """A GET answered with server-sent events (``Accept: text/event-stream``), read as it comes."""
        scope = self._scope("GET", path, None, {"accept": EVENT_STREAM}, True)
        return EventStream(self.app, scope)

    def _scope(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        headers: dict[str, str] | None,
        with_token: bool,
    ) -> dict[str, Any]:
        raw_path, _, query = path.partition("?")
        sent: list[tuple[bytes, bytes]] = [
            (b"host", self.host.encode("latin-1")),
            (b"user-agent", USER_AGENT),
        ]
        if payload is not None:
            sent += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if with_token and self.token is not None:
            sent.append((b"x-auth-token", self.token.encode("latin-1")))
        for name, value in (headers or {}).items():
            sent.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": self.scheme,
            "path": unquote(raw_path),
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": sent,
            "client": self.client,
            "server": None,
        }


async def _exchange(app: ASGIApp, scope: dict[str, Any], payload: bytes) -> ApiReply:
    finished = asyncio.Event()
    request_sent = False
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await finished.wait()  # nothing more to read: the "client" leaves once answered
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for name, value in message.get("headers", ()):
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return ApiReply(status, headers, _json(b"".join(chunks)))


@dataclass(frozen=True, slots=True)
class StreamBlock:
    """One block of an event stream: an event, or (``event`` empty) a comment such as a keep-alive."""

    event: str
    data: str


class EventStream:
    """One event-stream request of the API, run in-process, its blocks read as they are sent.

    ``async with`` runs it. Leaving the block tells the API that the client has gone, as a browser
    closing its connection would, and waits for the API to end the stream (it does so at once).
    """

    def __init__(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        self._app = app
        self._scope = scope
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue()  # None: the app returned
        self._gone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._text = ""
        self._blocks: deque[str] = deque()
        self._ended = False

    async def __aenter__(self) -> EventStream:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._gone.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=CLOSE_SECONDS)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled():
            task.exception()  # retrieved: the API's middleware has logged whatever went wrong

    async def _run(self) -> None:
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            self._messages.put_nowait(message)

        try:
            await self._app(self._scope, receive, send)
        finally:
            self._messages.put_nowait(None)

    async def open(self) -> ApiReply | None:
        """Wait for the answer: ``None`` when events follow, else the API's whole (refusing) reply."""
        message = await self._messages.get()
        if message is None or message["type"] != "http.response.start":
            self._ended = True
            return ApiReply(500, {}, None)
        status = int(message["status"])
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in message.get("headers", ())
        }
        if status == 200 and headers.get("content-type", "").startswith(EVENT_STREAM):
            return None
        chunks: list[bytes] = []
        while (message := await self._messages.get()) is not None:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self._ended = True
        return ApiReply(status, headers, _json(b"".join(chunks)))

    async def next(self, timeout: float) -> StreamBlock | None:
        """The next block, ``None`` once the stream has ended; ``TimeoutError`` after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._blocks:
            if self._ended:
                return None
            message = await asyncio.wait_for(self._messages.get(), max(0.0, deadline - loop.time()))
            if message is None or not message.get("more_body", False):
                self._ended = True  # an unfinished last block is dropped, as the format says
            if message is not None:
                # The API writes LF line ends; a block ends with an empty line.
                self._text += message.get("body", b"").decode("utf-8", "replace")
                *complete, self._text = self._text.split("\n\n")
                self._blocks.extend(complete)
        return _block(self._blocks.popleft())


def _block(text: str) -> StreamBlock:
    for event in parse_events([*text.split("\n"), ""]):
        return StreamBlock(event.event, event.data)
    return StreamBlock("", "")


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
