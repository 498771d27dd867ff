"""Request heads are bounded, slow clients are cut off, and refusals look like the rest of the API.

Raw sockets against a real server: what an attacker sends is not what an HTTP client library
would let a test send (a 64 MB header line, one byte a second, a connection that says nothing).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import PASSWORDS, PROJECT, SEED
from tests.support.server import ServerProcess, start_server
from tests.support.wire import REQUEST_ID

pytestmark = pytest.mark.e2e

HEAD_TIMEOUT = 2.0
SHOP_MESH = "9b2f4c1e-0000-4000-8000-000000000002"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("heads")
    server = start_server(
        workdir,
        f"sqlite:///{workdir / 'meshup.db'}",
        seed=SEED,
        extra_args=["--head-timeout-seconds", str(HEAD_TIMEOUT), "--sim-speed", "0"],
    )
    try:
        yield server
    finally:
        server.stop()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # bytes sent = bytes the server took
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def exchange(server: ServerProcess, request: bytes) -> bytes:
    with connect(server) as sock:
        # Refused before it was all sent: the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_all(sock)


def gateway_refusal(raw: bytes, status: int, message: str) -> dict[str, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    document = json.loads(body)
    assert document == {
        "error_code": "APIGW.0201",
        "error_msg": message,
        "request_id": headers["x-request-id"],
    }
    assert REQUEST_ID.fullmatch(document["request_id"])
    return dict(document)


def test_a_one_megabyte_header_is_refused_quickly(guarded: ServerProcess) -> None:
    started = time.monotonic()
    response = httpx.get(f"{guarded.url}/healthz", headers={"X-Big": "a" * 1_000_000}, timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == 431
    assert response.json()["error_code"] == "APIGW.0201"
    assert response.json()["error_msg"] == "Request headers too large."
    assert response.json()["request_id"] == response.headers["X-Request-Id"]


def test_ten_thousand_headers_are_refused(guarded: ServerProcess) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % n for n in range(10_000))
    raw = exchange(guarded, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    gateway_refusal(raw, 431, "Request headers too large.")


def test_more_than_a_hundred_short_headers_are_refused(guarded: ServerProcess) -> None:
    allowed = b"".join(b"X-H%d: 1\r\n" % n for n in range(98))  # + Host + Connection = 100
    fine = exchange(guarded, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + allowed + b"\r\n")
    assert fine.startswith(b"HTTP/1.1 200 ")
    raw = exchange(
        guarded,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + allowed + b"X-One: more\r\n\r\n",
    )
    gateway_refusal(raw, 431, "Request headers too large.")


def test_a_header_line_longer_than_eight_kib_is_refused(guarded: ServerProcess) -> None:
    line = b"X-Long: " + b"a" * (8 * 1024 - 10) + b"\r\n"  # 8 KiB with its name and separator
    fine = exchange(guarded, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + line + b"\r\n")
    assert fine.startswith(b"HTTP/1.1 200 ")
    longer = b"X-Long: " + b"a" * (8 * 1024) + b"\r\n"
    raw = exchange(guarded, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + longer + b"\r\n")
    gateway_refusal(raw, 431, "Request headers too large.")


def test_a_request_line_longer_than_eight_kib_is_refused(guarded: ServerProcess) -> None:
    raw = exchange(guarded, b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    gateway_refusal(raw, 414, "Request URI too large.")


def test_a_64_megabyte_header_line_is_refused_without_reading_it(guarded: ServerProcess) -> None:
    total = 64 * 1024 * 1024
    chunk = b"a" * 65536
    sent = 0
    started = time.monotonic()
    with connect(guarded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(sock)
    assert sent < 16 * 1024 * 1024, f"the server took {sent} bytes of a head it had refused"
    assert time.monotonic() - started < 10
    if raw:  # a reset may overtake the answer; the connection is closed either way
        gateway_refusal(raw, 431, "Request headers too large.")


def test_a_client_sending_one_byte_a_second_is_cut_off(guarded: ServerProcess) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    started = time.monotonic()
    answer = b""
    with connect(guarded) as sock:
        sock.settimeout(1.0)
        for byte in request:
            try:
                sock.send(bytes([byte]))
                answer = sock.recv(65536)
            except TimeoutError:
                continue  # a second went by: the next byte
            except (BrokenPipeError, ConnectionResetError):
                pass
            break  # the server answered or closed before the head was complete
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        answer += read_all(sock)
    assert HEAD_TIMEOUT - 0.5 <= elapsed < HEAD_TIMEOUT + 4, elapsed
    gateway_refusal(answer, 408, "Request timeout.")


def test_a_connection_that_says_nothing_is_closed(guarded: ServerProcess) -> None:
    started = time.monotonic()
    with connect(guarded) as sock:
        sock.settimeout(HEAD_TIMEOUT + 5)
        assert sock.recv(1) == b""  # closed without an answer: nothing was asked
    assert time.monotonic() - started < HEAD_TIMEOUT + 4


def test_many_slow_clients_do_not_keep_their_connections(guarded: ServerProcess) -> None:
    clients = [connect(guarded) for _ in range(50)]
    try:
        for sock in clients:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        # Meanwhile the server answers others at once.
        assert httpx.get(f"{guarded.url}/healthz", timeout=5).status_code == 200
        time.sleep(HEAD_TIMEOUT + 1.5)
        for sock in clients:
            sock.settimeout(5)
            assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in clients:
            sock.close()


def test_bodies_larger_than_a_head_still_reach_the_api(guarded: ServerProcess) -> None:
    # The head and a large body arrive together: only the head counts against the head limit.
    body = json.dumps({"auth": {"identity": {"methods": ["password"]}}, "pad": "x" * 50_000}).encode()
    raw = exchange(
        guarded,
        b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert raw.startswith(b"HTTP/1.1 400 ")  # the API's own answer (no password method given)
    assert b'"title":"Bad Request"' in raw


def test_pipelined_requests_on_one_connection_are_all_answered(guarded: ServerProcess) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(guarded, one * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 ") == 4


def test_malformed_requests_are_refused_in_the_gateway_envelope(guarded: ServerProcess) -> None:
    raw = exchange(guarded, b"NOT HTTP AT ALL\r\n\r\n")
    gateway_refusal(raw, 400, "API request error.")


def test_refusals_are_logged_and_counted(guarded: ServerProcess) -> None:
    raw = exchange(guarded, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    request_id = gateway_refusal(raw, 431, "Request headers too large.")["request_id"]
    deadline = time.monotonic() + 5
    while request_id not in guarded.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in guarded.log().splitlines() if request_id in line)
    assert json.loads(line) == {
        "requestId": request_id,
        "principal": "-",
        "method": "GET",
        "route": "unmatched",
        "status": 431,
        "durationMs": json.loads(line)["durationMs"],
    }
    metrics = httpx.get(f"{guarded.url}/metrics").text
    assert re.search(
        r'meshup_http_requests_total\{method="GET",route="unmatched",status="431"\} [1-9]', metrics
    )


def test_limits_are_configurable(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("heads-configured")
    server = start_server(
        workdir,
        f"sqlite:///{workdir / 'meshup.db'}",
        extra_args=["--max-headers", "50", "--max-header-line-bytes", "200"],
        extra_env={"MESHUP_MAX_HEADER_BYTES": "2000"},
    )
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"

    def lines(count: int, size: int) -> bytes:
        return b"".join(b"X-%02d: " % n + b"a" * (size - 8) + b"\r\n" for n in range(count))

    try:
        assert exchange(server, start + lines(8, 190) + b"\r\n").startswith(b"HTTP/1.1 200 ")
        refused = {
            "count": start + lines(49, 10) + b"\r\n",
            "line": start + lines(1, 210) + b"\r\n",
            "head": start + lines(11, 190) + b"\r\n",
        }
        for request in refused.values():
            gateway_refusal(exchange(server, request), 431, "Request headers too large.")
        uri = b"GET /healthz?" + b"q" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        gateway_refusal(exchange(server, uri), 414, "Request URI too large.")
    finally:
        server.stop()


def test_invalid_limits_stop_the_server_at_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("heads-invalid")
    with pytest.raises(RuntimeError, match="max-headers / MESHUP_MAX_HEADERS must be positive"):
        start_server(workdir, f"sqlite:///{workdir / 'meshup.db'}", extra_env={"MESHUP_MAX_HEADERS": "0"})


def test_405_lists_the_documented_methods_in_allow(guarded: ServerProcess) -> None:
    cases = {
        "/healthz": "GET, HEAD",
        "/v3/auth/tokens": "GET, HEAD, POST",
        f"/v1/{PROJECT}/meshes": "GET, HEAD, POST",
        f"/v1/{PROJECT}/meshes/{SHOP_MESH}": "DELETE, GET, HEAD, PUT",
        f"/v1/{PROJECT}/mesh-job/anything": "GET, HEAD",
        f"/v1/{PROJECT}/mesh-upgrade/": "GET, HEAD, POST",  # the trailing slash does not matter
    }
    for path, allowed in cases.items():
        response = httpx.request("PATCH", guarded.url + path)
        assert response.status_code == 405, path
        assert response.headers["Allow"] == allowed, path
        assert "X-Request-Id" in response.headers


def test_error_messages_never_echo_long_input(guarded: ServerProcess) -> None:
    login = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "acme-admin",
                        "password": PASSWORDS["acme-admin"],
                        "domain": {"name": "acme"},
                    }
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }
    token = httpx.post(f"{guarded.url}/v3/auth/tokens", json=login).headers["X-Subject-Token"]
    key = "k" * 500_000
    bodies = [
        ("PUT", f"/v1/{PROJECT}/meshes/{SHOP_MESH}", {"config": {key: 1}}),
        ("POST", f"/v1/{PROJECT}/meshes", {"apiVersion": "v1", "kind": "Mesh", "metadata": {"name": key}}),
        ("POST", f"/v1/{PROJECT}/mesh-upgrade", {"metadata": {"name": key}, "spec": {key: key}}),
        ("GET", f"/v1/{PROJECT}/mesh-job/{key[:7000]}", None),
        ("GET", f"/v1/{PROJECT}/meshes/{key[:7000]}", None),
    ]
    for method, path, body in bodies:
        response = httpx.request(method, guarded.url + path, json=body, headers={"X-Auth-Token": token})
        assert 400 <= response.status_code < 500, (path[:80], response.status_code)
        assert len(response.content) < 1200, (path[:80], response.status_code, len(response.content))
        message = response.json().get("errorMsg") or response.json().get("error_msg")
        assert message is not None and "k" * 600 not in message
