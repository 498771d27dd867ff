"""Bounded request heads: size, header count and a read deadline, enforced before parsing ends.

uvicorn's httptools protocol reads a request head of any size and waits for it forever. This
subclass counts the bytes of each head as they arrive and feeds the parser no more than the limit,
so a 64 MB header line costs one read buffer, not 64 MB; it refuses too many or too long header
lines, and closes a connection whose head is not complete within the deadline (slow clients).
Refusals are answered in the gateway envelope, as an API gateway in front of the service would,
with a request id, an access log line and a metrics sample like every other response.
"""

from __future__ import annotations

import asyncio
import http
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meshup.http.access_log import log_access
from meshup.http.envelopes import gateway_body
from meshup.http.metrics import HttpMetrics
from meshup.http.middleware import new_request_id

REQUEST_ERROR = "APIGW.0201"  # the gateway's code for a request it refuses to pass on
# After a refusal the rest of what the client is sending is read and dropped for a moment (a
# lingering close): closing with unread data would reset the connection, and a client still
# writing its oversized head would lose the answer. Bounded in time and bytes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_line_bytes: int = 8 * 1024  # the request line and each header line
    max_head_bytes: int = 32 * 1024  # the whole head, request line included
    max_headers: int = 100
    timeout: float = 15.0  # seconds from a head's first byte (or the connection) to its end


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# A write this large goes out at once (with what its connection holds), so a large or streamed
# body keeps the transport's own flow control.
_HOLD_BELOW = 64 * 1024


class _TurnWrites:
    """Responses written during one turn of the event loop, sent when the turn ends.

    uvicorn writes a response's head and body separately, and on loopback each send() runs the
    receiver's side too, waking the client if it sleeps: joined, a small response is one send()
    and one segment, and the responses of a busy turn leave back to back rather than one per
    request handled, which wakes a client once for all of them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[asyncio.Transport, list[bytes]] = {}

    def write(self, transport: asyncio.Transport, data: bytes) -> None:
        pending = self._pending
        chunks = pending.get(transport)
        if chunks is None:
            if len(data) >= _HOLD_BELOW:
                transport.write(data)
                return
            if not pending:
                self._loop.call_soon(self.flush)
            pending[transport] = [data]
            return
        chunks.append(data)
        if len(data) >= _HOLD_BELOW:
            self.flush_one(transport)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for transport, chunks in pending.items():
            if not transport.is_closing():
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def flush_one(self, transport: asyncio.Transport) -> None:
        chunks = self._pending.pop(transport, None)
        if chunks and not transport.is_closing():
            transport.write(b"".join(chunks))

    def drop(self, transport: asyncio.Transport) -> None:
        self._pending.pop(transport, None)


class _HeldWrites:
    """A connection's transport as uvicorn's response cycle sees it: writes go out at the end
    of the event loop's turn (``_TurnWrites``); everything else is the transport's own."""

    __slots__ = ("_transport", "_turn")

    def __init__(self, transport: asyncio.Transport, turn: _TurnWrites) -> None:
        self._transport = transport
        self._turn = turn

    def write(self, data: bytes) -> None:
        self._turn.write(self._transport, data)

    def close(self) -> None:
        self._turn.flush_one(self._transport)
        self._transport.close()

    def write_eof(self) -> None:
        self._turn.flush_one(self._transport)
        self._transport.write_eof()

    def abort(self) -> None:
        self._turn.drop(self._transport)
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnWrites] = weakref.WeakKeyDictionary()


def _turn_writes(loop: asyncio.AbstractEventLoop) -> _TurnWrites:
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = _TurnWrites(loop)
    return turn


class BoundedHeadProtocol(HttpToolsProtocol):
    """Set ``limits``, ``metrics`` and ``log_refusals`` on a subclass: see ``bounded_protocol``."""

    limits: ClassVar[HeadLimits] = HeadLimits()
    metrics: ClassVar[HttpMetrics | None] = None
    log_refusals: ClassVar[bool] = False  # an access log line per refusal (uvicorn's access_log is its own)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_started = 0.0  # loop time: connection made, last message complete, or first head byte
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._method_read = False
        self._lingered = 0

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _HeldWrites(transport, _turn_writes(self.loop))  # type: ignore[assignment]
        # One timer per connection that re-arms itself, rather than one per request: the hot path
        # only notes when a head starts. A client that connects and says nothing is timed too.
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self.limits.timeout, self._check_head_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        if not self._in_head:
            self._feed(data)
            return
        if not self._head_bytes:
            self._head_started = self.loop.time()
        room = self.limits.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Feed only what a head may hold: if the head ends inside it, the rest is body or the
        # next request; if it does not, the head is too large and the rest is never read.
        if room > 0:
            self._head_bytes += room
            self._feed(data[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(431, "Request headers too large.")
            return
        self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except _Refused as refused:
            self._refuse(refused.status, refused.message)
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; the refusal is its context.
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, cause.message)
            else:
                self._refuse(400, "API request error.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            self._refuse(400, "API request error.")

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._method_read = False

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._method_read = True  # the parser reads the method first
        if len(self.url) > self.limits.max_line_bytes:
            raise _Refused(414, "Request URI too large.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, "Request headers too large.")
        if len(name) + len(value) + 2 > self.limits.max_line_bytes:
            raise _Refused(431, "Request headers too large.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes on this connection start the next head.
        self._in_head = True
        self._head_bytes = 0
        self._head_started = self.loop.time()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._head_bytes:
            self._head_started = self.loop.time()  # an idle connection waits from here

    # Deadline and refusal

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _check_head_deadline(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        waited = self.loop.time() - self._head_started
        serving = self.cycle is not None and not self.cycle.response_complete
        if serving or not self._in_head or waited < self.limits.timeout:
            # A request is being served, or the head started recently: look again later.
            delay = self.limits.timeout if serving or not self._in_head else self.limits.timeout - waited
            self._head_timer = self.loop.call_later(delay, self._check_head_deadline)
        elif self._head_bytes:
            self._refuse(408, "Request timeout.")
        else:
            self.transport.close()  # nothing was asked: nothing to answer

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()  # the client has stopped sending: the linger is over

    def _refuse(self, status: int, message: str) -> None:
        """Answer in the gateway envelope and close: the rest of the head is never parsed."""
        self._refused = True
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head went wrong while an earlier response is being written: answers
            # must not interleave, so that response ends the connection instead.
            self.cycle.keep_alive = False
            return
        request_id = new_request_id()
        body = gateway_body(REQUEST_ERROR, message, request_id)
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self.transport.write(b"".join([*head, body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
        method = self._method()
        if self.metrics is not None:
            self.metrics.count(method, "unmatched", status)
        if self.log_refusals:
            elapsed = self.loop.time() - self._head_started
            log_access(request_id, "-", method, "unmatched", status, elapsed)

    def _method(self) -> str:
        if not self._method_read:
            return "-"
        try:
            return str(self.parser.get_method().decode("ascii"))
        except Exception:  # the parser is gone with the connection
            return "-"


def bounded_protocol(
    limits: HeadLimits, *, metrics: HttpMetrics | None = None, access_log: bool = False
) -> type[BoundedHeadProtocol]:
    """A uvicorn ``http`` protocol class enforcing ``limits`` (pass it as ``uvicorn.run(http=…)``)."""
    attributes = {"limits": limits, "metrics": metrics, "log_refusals": access_log}
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), attributes)
