"""Writes held to the end of the event loop's turn (meshup.http.heads): order, bounds, closing."""

from __future__ import annotations

import asyncio
from typing import Any

from meshup.http.heads import _HOLD_BELOW, _HeldWrites, _TurnWrites


class RecordingTransport:
    """Stands in for an asyncio transport: records what reaches the socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False
        self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def write_eof(self) -> None:
        self.eof = True

    def abort(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def held(loop: asyncio.AbstractEventLoop) -> tuple[list[RecordingTransport], list[_HeldWrites]]:
    turn = _TurnWrites(loop)
    raw = [RecordingTransport() for _ in range(3)]
    return raw, [_HeldWrites(t, turn) for t in raw]  # type: ignore[arg-type]


async def one_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_a_turns_writes_leave_together_in_order_one_send_per_connection() -> None:
    async def scenario() -> None:
        raw, conns = held(asyncio.get_running_loop())
        conns[0].write(b"HTTP/1.1 200 OK\r\n\r\n")
        conns[1].write(b"head-1 ")
        conns[0].write(b"body-0")
        conns[1].write(b"body-1")
        assert raw[0].sent == [] and raw[1].sent == []  # nothing before the turn ends
        await one_turn()
        assert raw[0].sent == [b"HTTP/1.1 200 OK\r\n\r\nbody-0"]
        assert raw[1].sent == [b"head-1 body-1"]
        assert raw[2].sent == []
        conns[0].write(b"next")  # a later turn starts a new batch
        await one_turn()
        assert raw[0].sent[-1] == b"next"

    asyncio.run(scenario())


def test_a_large_write_goes_out_at_once_after_what_was_held() -> None:
    async def scenario() -> None:
        raw, conns = held(asyncio.get_running_loop())
        big = b"x" * _HOLD_BELOW
        conns[0].write(b"head")
        conns[0].write(big)
        assert raw[0].sent == [b"head" + big]
        conns[1].write(big)
        assert raw[1].sent == [big]
        await one_turn()
        assert raw[0].sent == [b"head" + big] and raw[1].sent == [big]

    asyncio.run(scenario())


def test_closing_sends_what_is_held_first_and_a_closed_transport_gets_nothing() -> None:
    async def scenario() -> None:
        raw, conns = held(asyncio.get_running_loop())
        conns[0].write(b"last words")
        conns[0].close()
        assert raw[0].sent == [b"last words"] and raw[0].closing
        conns[1].write(b"refused")
        conns[1].write_eof()
        assert raw[1].sent == [b"refused"] and raw[1].eof
        conns[2].write(b"lost")
        raw[2].closing = True  # the peer went away during the turn
        await one_turn()
        assert raw[2].sent == []

    asyncio.run(scenario())


def test_abort_drops_what_is_held_and_other_calls_reach_the_transport() -> None:
    async def scenario() -> None:
        raw, conns = held(asyncio.get_running_loop())
        conns[0].write(b"dropped")
        conns[0].abort()
        await one_turn()
        assert raw[0].sent == []
        assert conns[1].get_extra_info("peername") == "info:peername"

    asyncio.run(scenario())
