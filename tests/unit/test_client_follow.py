"""Following a job: server-sent events when the server streams them, polling when it answers JSON,
and a deadline either way (an in-memory transport plays the server; the clock is fake)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from meshup.client.api import Api
from meshup.client.credentials import AccessKey, Profile
from meshup.client.errors import WaitTimedOut
from meshup.client.follow import Follower
from meshup.client.sse import Event, parse_events

PROJECT = "0123456789abcdef0123456789abcdef"
JOB = "2d1c7a00-0000-4000-8000-000000000001"


def job(phase: str, reason: str = "") -> dict[str, Any]:
    return {
        "kind": "Job",
        "apiVersion": "v3",
        "metadata": {"uid": JOB},
        "spec": {"type": "PreCheck", "subjobs": []},
        "status": {"phase": phase, "reason": reason, "startTime": "", "completionTime": ""},
    }


def stream(*docs: dict[str, Any], first_id: int = 1) -> httpx.Response:
    chunks = [": connected\n\n"]
    for number, doc in enumerate(docs, first_id):
        chunks.append(f"id: {number}\nevent: job\ndata: {json.dumps(doc)}\n\n")
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(chunks).encode()
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def follower(
    answers: Callable[[httpx.Request], httpx.Response], time: FakeTime, **kwargs: Any
) -> tuple[Follower, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers(request)

    profile = Profile("http://127.0.0.1:1", AccessKey("AK", "SK"), PROJECT, None, "test")
    client = Api(profile, transport=httpx.MockTransport(handler))
    return Follower(client, JOB, clock=time.clock, sleep=time.sleep, **kwargs), seen


def test_sse_parser_follows_the_format() -> None:
    lines = [
        ": a comment",
        "retry: 1000",
        "id: 7",
        'data: {"a":',
        "data:1}",
        "",
        "event: job",
        "data: x\r",
        "",
        "",  # a blank line with no data dispatches nothing
        "id: 8",
        "data: unfinished",  # no blank line: dropped
    ]
    assert list(parse_events(lines)) == [Event('{"a":\n1}', "message", "7"), Event("x", "job", "7")]


def test_a_streaming_server_is_followed_on_one_connection() -> None:
    time = FakeTime()
    follow, seen = follower(lambda r: stream(job("Initializing"), job("Running"), job("Success")), time)
    assert [doc["status"]["phase"] for doc in follow] == ["Initializing", "Running", "Success"]
    [request] = seen
    assert request.headers["accept"].startswith("text/event-stream")
    assert request.url.path == f"/v1/{PROJECT}/mesh-job/{JOB}"
    assert time.sleeps == []


def test_a_cut_stream_is_resumed_from_the_last_event_id() -> None:
    time = FakeTime()
    answers = iter([stream(job("Running")), stream(job("Failed", "boom"), first_id=2)])
    follow, seen = follower(lambda r: next(answers), time)
    assert [doc["status"]["phase"] for doc in follow] == ["Running", "Failed"]
    assert "last-event-id" not in seen[0].headers
    assert seen[1].headers["last-event-id"] == "1"


def test_a_server_without_streams_is_polled_every_interval() -> None:
    time = FakeTime()
    phases = iter(["Running", "Running", "Success"])
    follow, seen = follower(lambda r: httpx.Response(200, json=job(next(phases))), time, interval=0.5)
    assert [doc["status"]["phase"] for doc in follow] == ["Running", "Running", "Success"]
    assert len(seen) == 3
    assert seen[0].headers["accept"].startswith("text/event-stream")
    assert all("text/event-stream" not in r.headers.get("accept", "") for r in seen[1:])  # asked once
    assert time.sleeps == [0.5, 0.5]


def test_the_deadline_ends_the_wait() -> None:
    time = FakeTime()
    follow, seen = follower(
        lambda r: httpx.Response(200, json=job("Running")), time, interval=1.0, timeout=2.5
    )
    with pytest.raises(WaitTimedOut, match=JOB):
        list(follow)
    assert time.sleeps == [1.0, 1.0, 0.5]
    assert len(seen) == 3


def test_a_stream_that_stalls_past_the_deadline_ends_the_wait() -> None:
    time = FakeTime()

    def stall(request: httpx.Request) -> httpx.Response:
        time.now += 10  # the read took all the time there was
        raise httpx.ReadTimeout("timed out", request=request)

    follow, _ = follower(stall, time, timeout=5)
    with pytest.raises(WaitTimedOut):
        list(follow)


def test_events_that_are_not_job_documents_are_skipped() -> None:
    time = FakeTime()
    body = f"event: ping\ndata: hello\n\ndata: {json.dumps(job('Success'))}\n\n".encode()
    answer = httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body)
    follow, _ = follower(lambda r: answer, time)
    assert [doc["status"]["phase"] for doc in follow] == ["Success"]


def test_a_quiet_stream_is_opened_again_before_the_deadline() -> None:
    time = FakeTime()
    answers = iter(["stall", "done"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == "stall":
            time.now += 60
            raise httpx.ReadTimeout("quiet", request=request)
        return stream(job("Success"))

    follow, seen = follower(handler, time, timeout=600)
    assert [doc["status"]["phase"] for doc in follow] == ["Success"]
    assert len(seen) == 2


def test_events_arrive_as_the_server_sends_them_over_a_real_socket() -> None:
    """Each event is handed over when it arrives, not when the stream ends (the server below
    sends the second event only after the client has seen the first); events may be split
    across network writes."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    first_seen = threading.Event()

    class Streaming(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            assert self.headers["Accept"].startswith("text/event-stream")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            running = f"id: 1\ndata: {json.dumps(job('Running'))}\n\n".encode()
            self.wfile.write(running[:25])
            self.wfile.flush()
            self.wfile.write(running[25:])
            self.wfile.flush()
            first_seen.wait(10)
            self.wfile.write(f"id: 2\ndata: {json.dumps(job('Success'))}\n\n".encode())
            self.wfile.flush()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        profile = Profile(
            f"http://127.0.0.1:{httpd.server_address[1]}", AccessKey("AK", "SK"), PROJECT, None, "t"
        )
        with Api(profile) as client:
            phases = []
            for doc in Follower(client, JOB, timeout=30):
                phases.append(doc["status"]["phase"])
                first_seen.set()
        assert phases == ["Running", "Success"]
    finally:
        httpd.shutdown()
        httpd.server_close()
