"""Server-sent events (the WHATWG event-stream format), parsed from lines of text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None  # the last event id seen so far, as the format defines it


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events in stream order; comments, ``retry:`` and unknown fields are skipped."""
    data: list[str] = []
    event_type = ""
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event("\n".join(data), event_type or "message", last_id)
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
    # An event not ended by a blank line is incomplete and dropped, as the format says.
