"""The console's only way into meshup: its public HTTP API, called in-process over ASGI.

Every call goes through the whole application (request ids, access log, metrics, the mesh-job
fast path, authentication, IAM, validation) exactly as an outside client's would, with the signed-in
user's token and the browser's address, so the console can do no more and no less than the API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson
from starlette.types import ASGIApp, Message

USER_AGENT = b"meshup-console"


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
        raw_path, _, query = path.partition("?")
        payload = b"" if body is None else orjson.dumps(body)
        sent: list[tuple[bytes, bytes]] = [
            (b"host", self.host.encode("latin-1")),
            (b"user-agent", USER_AGENT),
        ]
        if body is not None:
            sent += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if with_token and self.token is not None:
            sent.append((b"x-auth-token", self.token.encode("latin-1")))
        for name, value in (headers or {}).items():
            sent.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        scope: dict[str, Any] = {
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
        return await _exchange(self.app, scope, payload)


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
    data = b"".join(chunks)
    try:
        document = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        document = None
    return ApiReply(status, headers, document)
