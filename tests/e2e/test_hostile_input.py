"""Hostile and malformed requests against a real server (asm-api.md §1-2, auth.md §2-3).

Every answer must be the documented envelope with the documented status: never a 500, never a
hang, never a secret. Requests go out as exact bytes over a raw socket (httpx would normalise
paths, refuse bad header bytes and add headers of its own); httpx is used only where a real client
library's behaviour is the point (large uploads).

Requests the gateway layer refuses before the application sees them (unparseable HTTP, a request
line or header line over 8 KiB, more than 100 headers, a head over 32 KiB) are answered in the
gateway envelope with ``APIGW.0201`` and 400, 414 or 431, with a request id like every answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshup.iam import signing
from meshup.iam.secrets import MasterKey
from meshup.iam.tokens import TokenCodec
from tests.e2e.conftest import (
    EU_JOB,
    EU_PROJECT,
    KEYS,
    MISSING_JOB,
    OTHER_PROJECT,
    PASSWORDS,
    PAY_JOB,
    PROJECT,
    SEED,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

GATEWAY_PREFIX = "Incorrect IAM authentication information: "
HEAD_REFUSALS = {400: "API request error.", 414: "Request URI too large.", 431: "Request headers too large."}
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
SERVICE_CODE = re.compile(r"ASM\.\d{8}")
TIMEOUT = 10.0  # seconds: any exchange slower than this is a hang
JOB_PATH = f"/v1/{PROJECT}/mesh-job/{PAY_JOB}"
ZERO_SIGNATURE = "0" * 64


# --- secrets that must never appear in a response body ---------------------------------------------


def _seed_secrets() -> list[bytes]:
    document = yaml.safe_load(SEED.read_text())
    found: list[bytes] = []
    for account in document.get("accounts", []):
        for user in account.get("users", []):
            if user.get("password"):
                found.append(str(user["password"]).encode())
            for key in user.get("accessKeys", []):
                found.append(str(key["sk"]).encode())
                if key.get("securityToken"):
                    found.append(str(key["securityToken"]).encode())
    return found


SEED_SECRETS = _seed_secrets()


def test_the_secret_list_is_not_empty() -> None:
    assert len(SEED_SECRETS) >= len(KEYS) + len(PASSWORDS)
    assert all(sk.encode() in SEED_SECRETS for _, sk in KEYS.values())


# --- raw HTTP ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case name -> value (latin-1); the first occurrence
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def refused_head(self) -> bool:
        """Refused at the gateway layer (unparseable or oversized) before the application saw it."""
        if self.status not in HEAD_REFUSALS or "x-request-id" not in self.headers:
            return False
        try:
            document = self.json()
        except ValueError:
            return False
        return isinstance(document, dict) and document.get("error_code") == "APIGW.0201"


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    assert status_line[0].startswith(b"HTTP/1."), f"not an HTTP response: {head[:200]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode("latin-1").strip().lower(), value.decode("latin-1").strip())
    return int(status_line[1]), headers


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked message, or None while more is to come."""
    body = b""
    while True:
        size_line, found, rest = data.partition(b"\r\n")
        if not found:
            return None
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest else None
        if len(rest) < size + 2:
            return None
        body += rest[:size]
        data = rest[size + 2 :]


def exchange(server: ServerProcess, data: bytes, *, head_only: bool = False) -> Reply:
    """Send exact bytes on a fresh connection and read one response; a slow server fails the test."""
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        # The server may answer and close before reading everything: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        buffer = b""
        status: int | None = None
        headers: dict[str, str] = {}
        body_start = -1
        while True:
            if time.monotonic() > deadline:
                pytest.fail(f"no complete response within {TIMEOUT}s to {data[:200]!r}")
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"the server hung on {data[:200]!r}")
            except ConnectionResetError:
                chunk = b""
            if chunk:
                buffer += chunk
            if body_start < 0 and b"\r\n\r\n" in buffer:
                head, _, _ = buffer.partition(b"\r\n\r\n")
                status, headers = _parse_head(head)
                body_start = len(head) + 4
            if body_start >= 0 and status is not None:
                if head_only:
                    return Reply(status, headers, b"")
                length = headers.get("content-length")
                if length is not None and len(buffer) - body_start >= int(length):
                    return Reply(status, headers, buffer[body_start : body_start + int(length)])
                if headers.get("transfer-encoding") == "chunked":
                    body = _dechunk(buffer[body_start:])
                    if body is not None:
                        return Reply(status, headers, body)
                if not chunk:
                    return Reply(status, headers, buffer[body_start:])
            if not chunk:
                pytest.fail(f"the server closed the connection without answering {data[:200]!r}")


def host_of(server: ServerProcess) -> bytes:
    return f"127.0.0.1:{server.port}".encode()


def raw_request(
    server: ServerProcess,
    method: bytes | str,
    target: bytes | str,
    headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    body: bytes = b"",
    *,
    host: bool = True,
) -> Reply:
    """One HTTP/1.1 request built byte for byte, checked against the rules every response obeys."""
    method_b = method.encode() if isinstance(method, str) else method
    target_b = target.encode() if isinstance(target, str) else target
    lines = [method_b + b" " + target_b + b" HTTP/1.1"]
    if host:
        lines.append(b"Host: " + host_of(server))
    lines.append(b"Connection: close")
    for name, value in headers:
        lines.append(
            (name.encode() if isinstance(name, str) else name)
            + b": "
            + (value.encode() if isinstance(value, str) else value)
        )
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    reply = exchange(server, b"\r\n".join(lines) + b"\r\n\r\n" + body, head_only=method_b == b"HEAD")
    check_reply(reply, is_head=method_b == b"HEAD")
    return reply


# --- what every response must look like -------------------------------------------------------------


def check_reply(reply: Reply, *, is_head: bool = False) -> str:
    """The universal rules; returns which envelope the body is (or "refused", "success", "head")."""
    assert reply.status < 500, f"server error {reply.status}: {reply.body[:500]!r}"
    for secret in SEED_SECRETS:
        assert secret not in reply.body, "a secret from the seed file leaked into a response"
    assert b"Signature=" not in reply.body
    request_id = reply.headers.get("x-request-id")
    assert request_id is not None and REQUEST_ID.fullmatch(request_id), reply.headers
    if is_head:
        return "head"
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    document = reply.json()
    if 200 <= reply.status < 300:
        return "success"
    assert isinstance(document, dict), document
    if set(document) == {"error_code", "error_msg", "request_id"}:
        assert document["request_id"] == request_id
        if document["error_code"] == "APIGW.0201":
            assert document["error_msg"] == HEAD_REFUSALS[reply.status], (reply.status, document)
            assert reply.headers.get("connection") == "close"
            return "refused"
        assert reply.status == 401
        assert document["error_code"] in ("APIGW.0301", "APIGW.0307")
        assert document["error_msg"].startswith(GATEWAY_PREFIX)
        assert len(document["error_msg"]) > len(GATEWAY_PREFIX)
        assert document["request_id"] == request_id
        return "gateway"
    if set(document) == {"errorCode", "errorMsg"}:
        assert SERVICE_CODE.fullmatch(document["errorCode"]), document
        assert isinstance(document["errorMsg"], str) and document["errorMsg"]
        return "service"
    assert set(document) == {"error"}, document
    error = document["error"]
    assert set(error) == {"code", "title", "message"}, error
    assert error["code"] == reply.status
    assert isinstance(error["title"], str) and isinstance(error["message"], str) and error["message"]
    return "keystone"


def expect_gateway(reply: Reply, *why: str, code: str = "APIGW.0301") -> str:
    assert check_reply(reply) == "gateway", (reply.status, reply.body)
    document = reply.json()
    assert document["error_code"] == code, document
    message: str = document["error_msg"]
    for part in why:
        assert part.lower() in message.lower(), message
    return message


def expect_service(reply: Reply, status: int, code: str, *why: str) -> str:
    assert check_reply(reply) == "service", (reply.status, reply.body)
    assert reply.status == status, (reply.status, reply.body)
    document = reply.json()
    assert document["errorCode"] == code, document
    message: str = document["errorMsg"]
    for part in why:
        assert part in message, message
    return message


def expect_keystone(reply: Reply, status: int, *why: str) -> str:
    assert check_reply(reply) == "keystone", (reply.status, reply.body)
    assert reply.status == status, (reply.status, reply.body)
    message: str = reply.json()["error"]["message"]
    for part in why:
        assert part.lower() in message.lower(), message
    return message


# --- signatures ----------------------------------------------------------------------------------------


def sdk_date(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def signed_headers(
    server: ServerProcess,
    method: str,
    target: str,
    *,
    who: str = "root",
    date: str | None = None,
    extra: dict[str, str] | None = None,
    body: bytes = b"",
    algorithm: str = "SDK-HMAC-SHA256",
) -> list[tuple[bytes, bytes]]:
    """Host, X-Sdk-Date and Authorization as the official SDK signs ``target`` (raw path and query)."""
    ak, sk = KEYS[who]
    date = date or sdk_date()
    headers = {"Host": host_of(server).decode(), "X-Sdk-Date": date, **(extra or {})}
    scope = f"{date[:8]}/cn-north-4/asm" if algorithm == "V11-HMAC-SHA256" else None
    authorization = signing.sign(
        method, target, headers, body, ak, sk, algorithm=algorithm, sdk_date=date, scope=scope
    )
    out = [(name.encode(), value.encode()) for name, value in headers.items() if name != "Host"]
    return [*out, (b"Authorization", authorization.encode())]


def hand_signed(
    server: ServerProcess, method: str, path: bytes, date: bytes, *, who: str = "root"
) -> list[tuple[bytes, bytes]]:
    """A correct SDK-HMAC-SHA256 signature over any ``X-Sdk-Date`` text (``sign()`` refuses bad dates)."""
    ak, sk = KEYS[who]
    values = {"host": host_of(server), "x-sdk-date": date}
    names = tuple(sorted(values))
    parsed = signing.ParsedAuthorization("SDK-HMAC-SHA256", ak, names, "", None)
    canonical = signing.canonical_request(signing.SignedRequest(method, path, b"", values, b""), parsed)
    to_sign = b"SDK-HMAC-SHA256\n" + date + b"\n" + hashlib.sha256(canonical).hexdigest().encode()
    signature = hmac.new(sk.encode(), to_sign, hashlib.sha256).hexdigest()
    authorization = f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return [(b"X-Sdk-Date", date), (b"Authorization", authorization.encode())]


def signed_get(server: ServerProcess, target: str, *, who: str = "root", **kwargs: Any) -> Reply:
    return raw_request(server, "GET", target, signed_headers(server, "GET", target, who=who, **kwargs))


# --- tokens ----------------------------------------------------------------------------------------


def login_body(user: str, password: str, domain: str = "acme", project: str | None = PROJECT) -> bytes:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"id": project}}
    return json.dumps({"auth": auth}).encode()


def post_tokens(
    server: ServerProcess, body: bytes, content_type: bytes | None = b"application/json"
) -> Reply:
    headers = [(b"Content-Type", content_type)] if content_type is not None else []
    return raw_request(server, "POST", "/v3/auth/tokens", headers, body)


@dataclasses.dataclass(frozen=True)
class Login:
    token: str
    user_id: str
    codec: TokenCodec


def server_master_key(server: ServerProcess) -> MasterKey:
    """The throwaway server's own master key (from its environment or the key file in its workdir)."""
    configured = server.env.get("MESHUP_MASTER_KEY")
    if configured:
        return MasterKey.from_text(configured)
    key_file = server.workdir / server.env.get("MESHUP_MASTER_KEY_FILE", "meshup.key")
    return MasterKey.from_text(key_file.read_text())


@pytest.fixture(scope="module", autouse=True)
def log_mark(server: ServerProcess) -> int:
    """Where the server log stood when this module started (the server is shared by the session)."""
    return len(server.log())


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Login:
    reply = post_tokens(server, login_body("alice", PASSWORDS["alice"]))
    assert reply.status == 201, reply.body
    token = reply.headers["x-subject-token"]
    return Login(token, reply.json()["token"]["user"]["id"], TokenCodec(server_master_key(server).token_key))


def with_token(server: ServerProcess, token: bytes | str, target: str = JOB_PATH) -> Reply:
    return raw_request(server, "GET", target, [(b"X-Auth-Token", token)])


# === Authorization header ===========================================================================

AUTHORIZATION_GARBAGE: list[tuple[str, bytes, str]] = [
    ("garbage", b"garbage", "unsupported Authorization scheme"),
    ("empty", b"", ""),
    ("only the algorithm", b"SDK-HMAC-SHA256", "malformed"),
    ("algorithm and a space", b"SDK-HMAC-SHA256 ", "malformed"),
    ("lower-case algorithm", b"sdk-hmac-sha256 Access=AKROOTEXAMPLE0000001", "unsupported"),
    (
        "unknown algorithm",
        b"AWS4-HMAC-SHA256 Credential=AKROOTEXAMPLE0000001/20240101/r/s/aws4_request, "
        b"SignedHeaders=host;x-sdk-date, Signature=" + ZERO_SIGNATURE.encode(),
        "unsupported",
    ),
    ("bearer", b"Bearer eyJhbGciOiJub25lIn0.e30.", "unsupported"),
    ("basic", b"Basic YWRtaW46YWRtaW4=", "unsupported"),
    ("6 KB", b"SDK-HMAC-SHA256 Access=" + b"A" * 6000, "too long"),
    ("6 KB of commas", b"SDK-HMAC-SHA256 " + b"," * 6000, "too long"),
    ("4 KB of commas", b"SDK-HMAC-SHA256 " + b"," * 4000, "malformed"),
    (
        "duplicated Access",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, Access=AKROOTEXAMPLE0000001, "
        b"SignedHeaders=host;x-sdk-date, Signature=" + ZERO_SIGNATURE.encode(),
        "duplicate",
    ),
    (
        "duplicated Signature",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, "
        b"Signature=" + ZERO_SIGNATURE.encode() + b", Signature=" + ZERO_SIGNATURE.encode(),
        "duplicate",
    ),
    (
        "duplicated signed header",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date;host, "
        b"Signature=" + ZERO_SIGNATURE.encode(),
        "duplicate",
    ),
    (
        "missing Signature",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date",
        "needs exactly",
    ),
    (
        "extra field",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, "
        b"Signature=" + ZERO_SIGNATURE.encode() + b", Nonce=1",
        "needs exactly",
    ),
    (
        "empty field values",
        b"SDK-HMAC-SHA256 Access=, SignedHeaders=, Signature=",
        "malformed",
    ),
    (
        "no equals signs",
        b"SDK-HMAC-SHA256 Access, SignedHeaders, Signature",
        "malformed",
    ),
    (
        "access key with punctuation",
        b"SDK-HMAC-SHA256 Access=AK'; DROP TABLE users;--, SignedHeaders=host;x-sdk-date, "
        b"Signature=" + ZERO_SIGNATURE.encode(),
        "malformed",
    ),
    (
        "signed header names with spaces",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=Host;X Sdk Date, "
        b"Signature=" + ZERO_SIGNATURE.encode(),
        "malformed SignedHeaders",
    ),
    (
        "Latin-1 bytes (not UTF-8)",
        b"SDK-HMAC-SHA256 Access=\xc4\xd6\xdc, SignedHeaders=host;x-sdk-date, Signature="
        + ZERO_SIGNATURE.encode(),
        "not ASCII",
    ),
    (
        "invalid UTF-8",
        b"SDK-HMAC-SHA256 Access=\xff\xfe\x80, SignedHeaders=host, Signature=" + ZERO_SIGNATURE.encode(),
        "not ASCII",
    ),
    (
        "UTF-8 non-ASCII",
        "SDK-HMAC-SHA256 Access=ÄKRÖÖT, SignedHeaders=host;x-sdk-date, Signature=".encode()
        + ZERO_SIGNATURE.encode(),
        "not ASCII",
    ),
    (
        "signature of 63 hex digits",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, Signature=" + b"0" * 63,
        "64 hex digits",
    ),
    (
        "signature of 65 hex digits",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, Signature=" + b"0" * 65,
        "64 hex digits",
    ),
    (
        "signature of 128 hex digits",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, Signature="
        + b"ab" * 64,
        "64 hex digits",
    ),
    (
        "signature not hex",
        b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, Signature=" + b"z" * 64,
        "64 hex digits",
    ),
    (
        "V11 without a credential scope",
        b"V11-HMAC-SHA256 Credential=AKROOTEXAMPLE0000001, SignedHeaders=host;x-sdk-date, Signature="
        + ZERO_SIGNATURE.encode(),
        "malformed Credential",
    ),
    (
        "V11 with a garbage scope",
        b"V11-HMAC-SHA256 Credential=AKROOTEXAMPLE0000001/../../etc, SignedHeaders=host;x-sdk-date, "
        b"Signature=" + ZERO_SIGNATURE.encode(),
        "malformed Credential",
    ),
]


@pytest.mark.parametrize(
    ("value", "why"),
    [pytest.param(value, why, id=name) for name, value, why in AUTHORIZATION_GARBAGE],
)
def test_malformed_authorization_is_a_gateway_401(server: ServerProcess, value: bytes, why: str) -> None:
    date = [(b"X-Sdk-Date", sdk_date().encode())]
    for target in (JOB_PATH, f"/v1/{OTHER_PROJECT}/mesh-job/{MISSING_JOB}"):
        reply = raw_request(server, "GET", target, [*date, (b"Authorization", value)])
        message = expect_gateway(reply, why)
        assert len(message) < 300  # the header is never echoed back
    # /v3 speaks Keystone's envelope about the same failure.
    expect_keystone(raw_request(server, "GET", "/v3/projects", [*date, (b"Authorization", value)]), 401)


def test_unknown_access_key(server: ServerProcess) -> None:
    date = sdk_date()
    headers = {"Host": host_of(server).decode(), "X-Sdk-Date": date}
    authorization = signing.sign(
        "GET", JOB_PATH, headers, b"", "AKNOBODY000000000001", "NobodySecretKey0000000001", sdk_date=date
    )
    reply = raw_request(
        server, "GET", JOB_PATH, [(b"X-Sdk-Date", date.encode()), (b"Authorization", authorization.encode())]
    )
    expect_gateway(reply, "unknown access key")


def test_wrong_secret_key_never_reveals_the_expected_signature(server: ServerProcess) -> None:
    ak, sk = KEYS["alice"]
    date = sdk_date()
    headers = {"Host": host_of(server).decode(), "X-Sdk-Date": date}
    forged = signing.sign(
        "GET", JOB_PATH, headers, b"", ak, "NotAliceSecretKey0000000000000000000001", sdk_date=date
    )
    genuine = signing.sign("GET", JOB_PATH, headers, b"", ak, sk, sdk_date=date)
    expected_signature = genuine.rsplit("Signature=", 1)[1].encode()
    reply = raw_request(
        server, "GET", JOB_PATH, [(b"X-Sdk-Date", date.encode()), (b"Authorization", forged.encode())]
    )
    expect_gateway(reply, "signature mismatch")
    assert expected_signature not in reply.body
    assert expected_signature[:16] not in reply.body
    assert forged.rsplit("Signature=", 1)[1].encode() not in reply.body


@pytest.mark.parametrize("algorithm", ["SDK-HMAC-SHA256", "SDK-HMAC-SM3", "V11-HMAC-SHA256"])
def test_every_algorithm_refuses_a_tampered_path(server: ServerProcess, algorithm: str) -> None:
    headers = signed_headers(server, "GET", JOB_PATH, algorithm=algorithm)
    assert raw_request(server, "GET", JOB_PATH, headers).status == 200
    tampered = JOB_PATH.replace(PAY_JOB, MISSING_JOB)
    expect_gateway(raw_request(server, "GET", tampered, headers), "signature mismatch")


def test_disabled_expired_and_temporary_keys(server: ServerProcess) -> None:
    expect_gateway(signed_get(server, JOB_PATH, who="frank"), "disabled")
    date = sdk_date()
    for ak, sk, token, why in [
        ("AKALICETEMPEXPIRED01", "AliceTempSecretExpired000000000000000001", "temp-token-expired", "expired"),
        ("AKALICETEMPVALID0001", "AliceTempSecretValid00000000000000000001", None, "X-Security-Token"),
        (
            "AKALICETEMPVALID0001",
            "AliceTempSecretValid00000000000000000001",
            "\xff-not-it",
            "X-Security-Token",
        ),
    ]:
        headers = {"Host": host_of(server).decode(), "X-Sdk-Date": date}
        extra: list[tuple[bytes, bytes]] = []
        if token is not None:
            headers["X-Security-Token"] = token
            extra = [(b"X-Security-Token", token.encode("latin-1"))]
        authorization = signing.sign("GET", JOB_PATH, headers, b"", ak, sk, sdk_date=date)
        reply = raw_request(
            server,
            "GET",
            JOB_PATH,
            [(b"X-Sdk-Date", date.encode()), *extra, (b"Authorization", authorization.encode())],
        )
        expect_gateway(reply, why)


def test_duplicate_authorization_headers_use_the_first(server: ServerProcess) -> None:
    good = signed_headers(server, "GET", JOB_PATH)
    garbage = (b"Authorization", b"garbage")
    assert raw_request(server, "GET", JOB_PATH, [*good, garbage]).status == 200
    expect_gateway(raw_request(server, "GET", JOB_PATH, [good[0], garbage, good[1]]), "unsupported")


def test_no_credentials_at_all(server: ServerProcess) -> None:
    expect_gateway(raw_request(server, "GET", JOB_PATH), "no X-Auth-Token or Authorization")
    # An HTTP/1.0 request without Host is still answered with the envelope.
    reply = exchange(server, f"GET {JOB_PATH} HTTP/1.0\r\n\r\n".encode())
    expect_gateway(reply, "no X-Auth-Token or Authorization")


# === X-Auth-Token ===================================================================================


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   ", id="blank"),
        pytest.param(b"MU1.", id="prefix-only"),
        pytest.param(b"MU1..", id="empty-parts"),
        pytest.param(b"MU1.=====.=====", id="padding"),
        pytest.param(b"MU1." + b"A" * 3000 + b".AAAA", id="over-max-length"),
        pytest.param(b"A" * 7000, id="7KB"),
        pytest.param(b"MU1." + b"\xff\xfe\x80" * 10, id="not-UTF-8"),
        pytest.param("MU1.äöü.ß".encode(), id="UTF-8-non-ASCII"),
        pytest.param(b"MU1.eyJ1IjoieCJ9.AAAA", id="short-mac"),
        pytest.param(b"Bearer MU1.eyJ1IjoieCJ9.AAAA", id="bearer-prefix"),
        pytest.param(b"MU1.\x80\x9f\xa0\xff", id="high-bytes"),
    ],
)
def test_garbage_token_is_a_gateway_401(server: ServerProcess, token: bytes) -> None:
    expect_gateway(with_token(server, token), "token")
    # Even for a project the caller could never use, authentication fails first.
    expect_gateway(with_token(server, token, f"/v1/{OTHER_PROJECT}/mesh-job/{MISSING_JOB}"), "token")


def test_a_real_token_works_and_flipped_characters_do_not(server: ServerProcess, alice: Login) -> None:
    assert with_token(server, alice.token).status == 200
    token = alice.token
    payload_start = len("MU1.")
    mac_start = token.rindex(".") + 1
    positions = {
        0,  # the prefix
        payload_start,
        payload_start + 5,
        (payload_start + mac_start) // 2,
        mac_start - 2,
        mac_start - 1,  # the separator
        mac_start,
        mac_start + 10,
        len(token) - 5,
    }
    for position in sorted(positions):
        original = token[position]
        replacement = "B" if original != "B" else "C"
        flipped = token[:position] + replacement + token[position + 1 :]
        expect_gateway(with_token(server, flipped), "token")
    expect_gateway(with_token(server, token[:-8]), "token")
    expect_gateway(with_token(server, token + "AAAA"), "token")
    expect_gateway(with_token(server, token.replace(".", "", 1)), "token")


def test_forged_tokens(server: ServerProcess, alice: Login) -> None:
    claims = alice.codec.decode(alice.token, datetime.now(UTC))
    now = datetime.now(UTC)
    # Well-formed, but signed with a key that is not the server's.
    stranger = TokenCodec(secrets.token_bytes(32))
    expect_gateway(with_token(server, stranger.issue(claims)), "token is not valid")
    # Well-formed, claims rewritten to another user, MAC left alone.
    head, _, mac = alice.token.split(".")
    other = TokenCodec(secrets.token_bytes(32)).issue(dataclasses.replace(claims, user_id="0" * 32))
    expect_gateway(with_token(server, f"{head}.{other.split('.')[1]}.{mac}"), "token is not valid")
    # Genuinely signed (with the server's key), but expired: APIGW.0307.
    expired = alice.codec.issue(
        dataclasses.replace(claims, issued_at=now - timedelta(days=2), expires_at=now - timedelta(seconds=5))
    )
    expect_gateway(with_token(server, expired), "expired", code="APIGW.0307")
    # Genuinely signed for a user that does not exist.
    ghost = alice.codec.issue(dataclasses.replace(claims, user_id="f" * 32))
    expect_gateway(with_token(server, ghost), "no longer valid")
    # Genuinely signed with a stale password version.
    stale = alice.codec.issue(dataclasses.replace(claims, password_version=claims.password_version + 7))
    expect_gateway(with_token(server, stale), "password change")
    # The Keystone token check speaks its own envelope about the same tokens.
    check = [(b"X-Auth-Token", alice.token.encode())]
    for subject in (expired, ghost, "garbage", "\xff"):
        reply = raw_request(
            server, "GET", "/v3/auth/tokens", [*check, (b"X-Subject-Token", subject.encode("latin-1"))]
        )
        expect_keystone(reply, 404)
    for caller in (expired, "garbage", "\xfe" * 100, "A" * 7000):
        reply = raw_request(
            server,
            "GET",
            "/v3/auth/tokens",
            [(b"X-Auth-Token", caller.encode("latin-1")), (b"X-Subject-Token", alice.token.encode())],
        )
        expect_keystone(reply, 401)


def test_token_for_another_project_is_a_service_401(server: ServerProcess, alice: Login) -> None:
    for project in (EU_PROJECT, OTHER_PROJECT, "%7Bproject_id%7D", "x" * 7000):
        reply = with_token(server, alice.token, f"/v1/{project}/mesh-job/{EU_JOB}")
        message = expect_service(reply, 401, "ASM.01000001", "scoped to another project")
        assert len(message) < 300


def test_token_wins_over_a_signature(server: ServerProcess, alice: Login) -> None:
    headers = signed_headers(server, "GET", JOB_PATH)
    assert raw_request(server, "GET", JOB_PATH, headers).status == 200
    reply = raw_request(server, "GET", JOB_PATH, [*headers, (b"X-Auth-Token", b"garbage")])
    expect_gateway(reply, "token")


# === X-Sdk-Date =====================================================================================


def test_hand_signing_agrees_with_the_server(server: ServerProcess) -> None:
    """The helper below signs any date text; with a good date the server must accept it."""
    reply = raw_request(
        server, "GET", JOB_PATH, hand_signed(server, "GET", JOB_PATH.encode(), sdk_date().encode())
    )
    assert reply.status == 200


@pytest.mark.parametrize(
    ("date", "why"),
    [
        ("20241399T250000Z", "not a valid date"),
        ("20240230T120000Z", "not a valid date"),
        ("20230229T000000Z", "not a valid date"),
        ("20241127T240000Z", "not a valid date"),
        ("20241127T235960Z", "not a valid date"),
        ("00000101T000000Z", "not a valid date"),
        ("20241127T100000", "YYYYMMDDTHHMMSSZ"),
        ("20241127 100000Z", "YYYYMMDDTHHMMSSZ"),
        ("20241127t100000z", "YYYYMMDDTHHMMSSZ"),
        ("+0241127T100000Z", "YYYYMMDDTHHMMSSZ"),
        ("2024112\u0667T100000Z", "X-Sdk-Date"),  # an Arabic-Indic digit
        ("2024-11-27T10:00:00Z", "X-Sdk-Date"),
        ("Wed, 27 Nov 2024 10:00:00 GMT", "X-Sdk-Date"),
        ("1732701600", "X-Sdk-Date"),
        ("x", "X-Sdk-Date"),
        ("9" * 5000, "too long"),
    ],
)
def test_impossible_or_misformatted_sdk_date(server: ServerProcess, date: str, why: str) -> None:
    # Correctly signed over exactly this date text: only the date check can refuse it.
    headers = hand_signed(server, "GET", JOB_PATH.encode(), date.encode())
    expect_gateway(raw_request(server, "GET", JOB_PATH, headers), why)


def test_sdk_date_outside_the_window(server: ServerProcess) -> None:
    now = datetime.now(UTC)
    for when in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
        now - timedelta(minutes=16),
        now + timedelta(minutes=16),
        now + timedelta(days=365),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ):
        expect_gateway(signed_get(server, JOB_PATH, date=sdk_date(when)), "window")
    for when in (now - timedelta(minutes=13), now + timedelta(minutes=13)):
        assert signed_get(server, JOB_PATH, date=sdk_date(when)).status == 200


def test_sdk_date_raw_bytes_missing_or_unsigned(server: ServerProcess) -> None:
    good = signed_headers(server, "GET", JOB_PATH)
    authorization = good[-1]
    # Not UTF-8 at all (raw socket: no client would send this).
    reply = raw_request(server, "GET", JOB_PATH, [(b"X-Sdk-Date", b"\xff" * 16), authorization])
    expect_gateway(reply, "X-Sdk-Date")
    # Signed but missing from the request.
    expect_gateway(raw_request(server, "GET", JOB_PATH, [authorization]), "X-Sdk-Date")
    # Present but not among the signed headers.
    ak, sk = KEYS["root"]
    date = sdk_date()
    unsigned = signing.sign("GET", JOB_PATH, {"Host": host_of(server).decode()}, b"", ak, sk, sdk_date=date)
    unsigned = unsigned.replace("host;x-sdk-date", "host")
    reply = raw_request(
        server, "GET", JOB_PATH, [(b"X-Sdk-Date", date.encode()), (b"Authorization", unsigned.encode())]
    )
    expect_gateway(reply, "X-Sdk-Date is not signed")


# === paths and methods ===========================================================================


def test_trailing_slash_is_the_same_resource(server: ServerProcess) -> None:
    for target in (JOB_PATH + "/", JOB_PATH):
        reply = signed_get(server, target)
        assert reply.status == 200, reply.body
        assert reply.json()["metadata"]["uid"] == PAY_JOB
    # The signature does not cover the trailing slash (auth.md §3): signed without, sent with.
    headers = signed_headers(server, "GET", JOB_PATH)
    assert raw_request(server, "GET", JOB_PATH + "/", headers).status == 200


@pytest.mark.parametrize(
    ("job_segment", "status", "code"),
    [
        pytest.param("a%2Fb", 404, "ASM.01010002", id="encoded-slash"),
        pytest.param(f"{PAY_JOB[:8]}%2F..%2F{PAY_JOB[9:]}", 404, "ASM.01010002", id="encoded-traversal"),
        pytest.param("%2E%2E", 404, "ASM.01010002", id="encoded-dot-dot"),
        pytest.param("..", 404, "ASM.01010002", id="dot-dot"),
        pytest.param(f"../mesh-job/{PAY_JOB}", 404, "ASM.01010002", id="dot-dot-segment"),
        pytest.param(f"./{PAY_JOB}", 404, "ASM.01010002", id="dot-segment"),
        pytest.param("%E2%9C%93%F0%9F%92%A5", 404, "ASM.01010002", id="encoded-unicode"),
        pytest.param("%FF%FE%80", 404, "ASM.01010002", id="encoded-invalid-utf8"),
        pytest.param("%C0%AE%C0%AE", 404, "ASM.01010002", id="overlong-utf8-dots"),
        pytest.param("a%00b", 404, "ASM.01010002", id="nul"),
        pytest.param("%00", 404, "ASM.01010002", id="only-nul"),
        pytest.param("a%20b%22c%27d", 404, "ASM.01010002", id="space-quotes"),
        pytest.param("%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "ASM.01010002", id="html"),
        pytest.param("'%20OR%20'1'='1", 404, "ASM.01010002", id="sql"),
        pytest.param("%25%25%25", 404, "ASM.01010002", id="encoded-percent"),
        pytest.param("%zz%2", 404, "ASM.01010002", id="broken-escapes"),
        pytest.param("a" * 7000, 404, "ASM.01010002", id="7KB"),
        pytest.param("%41" * 2600, 404, "ASM.01010002", id="7.8KB-encoded"),
        pytest.param(PAY_JOB.upper(), 404, "ASM.01010002", id="upper-case-uuid"),
        pytest.param(f"{PAY_JOB};x=1", 404, "ASM.01010002", id="matrix-param"),
        pytest.param(MISSING_JOB, 404, "ASM.01010002", id="missing"),
    ],
)
def test_hostile_job_ids_with_valid_signatures(
    server: ServerProcess, job_segment: str, status: int, code: str
) -> None:
    target = f"/v1/{PROJECT}/mesh-job/{job_segment}"
    message = expect_service(signed_get(server, target), status, code)
    assert len(message) < 300  # long ids are clipped, never echoed whole
    assert "\x00" not in message


def test_hostile_projects_with_valid_signatures(server: ServerProcess) -> None:
    for project in (
        "%7Bproject_id%7D",  # what the SDK sends when it has no project id
        "{project_id}",
        OTHER_PROJECT,
        PROJECT.upper(),
        f"{PROJECT}%00",
        "%FF" * 10,
        "p" * 7000,
        "%E2%80%AE" + PROJECT,  # right-to-left override
    ):
        target = f"/v1/{project}/mesh-job/{PAY_JOB}"
        message = expect_service(signed_get(server, target), 401, "ASM.01000001", "not a project")
        assert len(message) < 300
    # The same paths without credentials: authentication comes first.
    expect_gateway(raw_request(server, "GET", f"/v1/%7Bproject_id%7D/mesh-job/{PAY_JOB}"), "no X-Auth-Token")


@pytest.mark.parametrize(
    "target",
    [
        f"/v1/{PROJECT}//mesh-job/{PAY_JOB}",
        f"//v1/{PROJECT}/mesh-job/{PAY_JOB}",
        f"/v1//{PROJECT}/mesh-job/{PAY_JOB}",
        f"/v1/{PROJECT}/mesh-job//{PAY_JOB}",
        f"/v1/{PROJECT}/mesh-job",
        f"/v1/{PROJECT}/mesh-job/",
        f"/v1/{PROJECT}/mesh-jobs/{PAY_JOB}",
        f"/v1/{PROJECT}/MESH-JOB/{PAY_JOB}",
        f"/v1/{PROJECT}/mesh-job/{PAY_JOB}/subjobs",
        f"/v1/{PROJECT}",
        f"/V1/{PROJECT}/mesh-job/{PAY_JOB}",
        "/v2/x",
        "/nope",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/v1/" + "a/" * 2000,
        "/" + "%C3%A9" * 100,
        "*",
    ],
)
def test_unknown_routes_are_service_404(server: ServerProcess, target: str) -> None:
    expect_service(signed_get(server, target), 404, "ASM.01010002")
    expect_service(raw_request(server, "GET", target), 404, "ASM.01010002")


def test_unknown_identity_routes_are_keystone_404(server: ServerProcess) -> None:
    for target in ("/v3/nope", "/v3/auth/tokens/extra", "/v3/projects/x/y", "/v3/%FF"):
        expect_keystone(raw_request(server, "GET", target), 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_wrong_methods_are_405_in_the_layer_envelope(server: ServerProcess, method: str) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
    content = [(b"Content-Type", b"application/json")]
    for target in (JOB_PATH, JOB_PATH + "/"):
        expect_service(raw_request(server, method, target, content, body), 405, "ASM.01010001", method)
        signed = signed_headers(server, method, target, body=body, extra={"Content-Type": "application/json"})
        expect_service(raw_request(server, method, target, signed, body), 405, "ASM.01010001")
    if method != "POST":
        expect_keystone(raw_request(server, method, "/v3/auth/tokens", content, body), 405, method)
    head = raw_request(server, "HEAD", JOB_PATH)
    assert head.status in (401, 405) and check_reply(head, is_head=True) == "head"


def test_unknown_methods_never_reach_a_500(server: ServerProcess) -> None:
    for method in (b"FOO", b"get", b"G\xffT", b"CONNECT", b"PROPFIND", b"M-SEARCH", b"GET" * 100):
        reply = raw_request(server, method, JOB_PATH)
        assert reply.refused_head or reply.status in (401, 404, 405), (method, reply)


@pytest.mark.parametrize(
    "query",
    [
        "a=%ZZ&&=&b=%FF",
        "=&=&&&",
        "a&a&a=1&a=2&a=10&a=9",
        "%00=%00",
        "x=" + "%E2%9C%93" * 300,
        "k" * 4000 + "=v",
        "limit=-1&offset=99999999999999999999999&marker=%27",
        "project_id=" + OTHER_PROJECT,
        "a=1;b=2",
        "a=b=c=d",
        "+=+&%2B=%2B",
        "x=%",
    ],
)
def test_junk_query_strings_are_ignored(server: ServerProcess, query: str) -> None:
    reply = signed_get(server, f"{JOB_PATH}?{query}")
    assert reply.status == 200, reply.body
    assert reply.json()["metadata"]["uid"] == PAY_JOB
    expect_service(signed_get(server, f"/v1/{PROJECT}/mesh-job/{MISSING_JOB}?{query}"), 404, "ASM.01010002")
    expect_gateway(raw_request(server, "GET", f"{JOB_PATH}?{query}"), "no X-Auth-Token")
    reply = signed_get(server, f"/v3/projects?{query}")
    assert reply.status == 200 and check_reply(reply) == "success"


def test_raw_bytes_the_http_parser_refuses(server: ServerProcess) -> None:
    for target in (
        f"/v1/{PROJECT}/mesh-job/\xff\xfe".encode("latin-1"),
        "/v1/é/mesh-job/x".encode(),
        f"{JOB_PATH}?\xff=\xfe".encode("latin-1"),
        b"v1/no-leading-slash",
        f"/v1/{PROJECT}/mesh-job/a b".encode(),
        b"/" + b"a" * 1_000_000,
    ):
        reply = raw_request(server, "GET", target)
        assert reply.refused_head or reply.status in (401, 404), (target[:80], reply)
    for header in (b"X-Auth-Token: a\x00b", b"X-Auth-Token: a\x01\x7f", b"Bad Name: x", b": empty-name"):
        name, _, value = header.partition(b": ")
        reply = raw_request(server, "GET", JOB_PATH, [(name, value)])
        assert reply.refused_head or reply.status == 401, (header, reply)


def test_odd_host_headers(server: ServerProcess) -> None:
    for host in (b"[", b"[::1", b"a b", b"\xff\xfe", b"example.com:99999999", b"h:abc", b"x" * 5000):
        reply = raw_request(server, "GET", JOB_PATH, [(b"Host", host)], host=False)
        assert reply.refused_head or check_reply(reply) == "gateway", (host, reply)
        reply = raw_request(server, "GET", "/v3/nope", [(b"Host", host)], host=False)
        assert reply.refused_head or check_reply(reply) == "keystone", (host, reply)


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        pytest.param(
            JOB_PATH,
            [(b"Authorization", b"SDK-HMAC-SHA256 Access=" + b"A" * 100_000)],
            431,
            id="100KB-authorization",
        ),
        pytest.param(
            JOB_PATH, [(b"Authorization", b"SDK-HMAC-SHA256 " + b"," * 100_000)], 431, id="100KB-of-commas"
        ),
        pytest.param(JOB_PATH, [(b"X-Auth-Token", b"A" * 65536)], 431, id="64KB-token"),
        pytest.param(
            "/v3/auth/tokens",
            [(b"X-Auth-Token", b"A" * 65536), (b"X-Subject-Token", b"x")],
            431,
            id="64KB-caller-token",
        ),
        pytest.param(JOB_PATH, [(f"X-H{n}".encode(), b"1") for n in range(150)], 431, id="150-headers"),
        pytest.param(f"/v1/{'x' * 10_000}/mesh-job/{EU_JOB}", [], 414, id="10KB-project"),
        pytest.param(f"/v1/{PROJECT}/mesh-job/{'a' * 10_240}", [], 414, id="10KB-job-id"),
        pytest.param(f"/v1/{PROJECT}/mesh-job/{'%41' * 3000}", [], 414, id="9KB-encoded-job-id"),
        pytest.param(f"/v1/{PROJECT}/mesh-upgrade/{'x' * 10_240}", [], 414, id="10KB-task-id"),
    ],
)
def test_oversized_heads_are_refused_before_the_application(
    server: ServerProcess, target: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    for credentials in ([], signed_headers(server, "GET", JOB_PATH)):
        reply = raw_request(server, "GET", target, [*credentials, *headers])
        assert check_reply(reply) == "refused", (reply.status, reply.body[:200])
        assert reply.status == status
        assert len(reply.body) < 200  # nothing of the input comes back


def test_request_ids_are_unique(server: ServerProcess) -> None:
    ids = {raw_request(server, "GET", "/nope").headers["x-request-id"] for _ in range(20)}
    ids |= {raw_request(server, "GET", JOB_PATH).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 40


# === POST /v3/auth/tokens ===========================================================================


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "required"),
        (b"   ", "malformed JSON"),
        (b"null", "body"),
        (b"[]", "body"),
        (b'"auth"', "body"),
        (b"1e999999", "malformed JSON"),
        (b'{"auth":', "malformed JSON"),
        (b'{"auth": "\xff\xfe"}', "malformed JSON"),
        (b'{"auth\x00": 1}', "malformed JSON"),
        (b'{"auth": "\\ud800"}', "malformed JSON"),
        (b"\xef\xbb\xbf{}", "malformed JSON"),
        (b"{}", "auth: required"),
        (b'{"auth": {}}', "auth.identity: required"),
        (b'{"auth": []}', "auth: must be an object"),
        (b'{"auth": {"identity": {"methods": "password"}}}', "auth.identity.methods"),
        (b'{"auth": {"identity": {"methods": ["token"]}}}', "auth.identity.methods"),
        (b'{"auth": {"identity": {"methods": ["password"]}}}', "auth.identity.password"),
        (b'{"auth": {"identity": {"methods": ["password"], "password": {"user": 5}}}}', "user"),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice"}}}}}',
            "auth.identity.password.user.password: required",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": 1, "password": "x", "domain": {"name": "acme"}}}}}}',
            "auth.identity.password.user.name",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": ["x"], "domain": {"name": "acme"}}}}}}',
            "auth.identity.password.user.password",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x"}}}}}',
            "domain",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": "acme"}}}}}',
            "auth.identity.password.user.domain",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"name": "acme"}}}}, "scope": 5}}',
            "auth.scope",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"name": "acme"}}}}, "scope": {"project": {}}}}',
            "auth.scope.project",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "' + b"a" * 300 + b'", "password": "x", "domain": {"name": "acme"}}}}}}',
            "at most 256",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "ali\\u0000ce", "password": "x", "domain": {"name": "acme"}}}}}}',
            "auth.identity.password.user.name",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"id": "\\u0000", "password": "x"}}}}}',
            "auth.identity.password.user.id",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"name": "ac\\u0000me"}}}}}}',
            "auth.identity.password.user.domain.name",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"id": "\\u0000"}}}}}}',
            "auth.identity.password.user.domain.id",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"name": "acme"}}}}, '
            b'"scope": {"project": {"name": "cn-north-4\\u0000", "domain": {"name": "acme"}}}}}',
            "auth.scope.project.name",
        ),
        (
            b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
            b'{"name": "alice", "password": "x", "domain": {"name": "acme"}}}}, '
            b'"scope": {"project": {"id": "\\u0000"}}}}',
            "auth.scope.project.id",
        ),
        (b"[" * 20_000 + b"]" * 20_000, "malformed JSON"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "malformed JSON"),
        (b'{"auth": ' + b'{"auth": ' * 1000 + b"{}" + b"}" * 1001, "auth.identity"),
    ],
)
def test_malformed_login_bodies_are_keystone_400(server: ServerProcess, body: bytes, why: str) -> None:
    message = expect_keystone(post_tokens(server, body), 400, why)
    assert len(message) < 400


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/jsonx",
        b"application/xml",
        b"json",
        b"",
        b"\xff\xfe",
        b"application/json" + b";" * 5000,  # still JSON: parameters are ignored
    ],
)
def test_login_content_type(server: ServerProcess, content_type: bytes | None) -> None:
    body = login_body("zed-nobody", "whatever")
    reply = post_tokens(server, body, content_type)
    if content_type is not None and content_type.split(b";")[0] == b"application/json":
        expect_keystone(reply, 401)
    else:
        expect_keystone(reply, 400, "Content-Type")


def test_login_accepts_json_with_a_charset(server: ServerProcess) -> None:
    body = login_body("alice", PASSWORDS["alice"])
    for content_type in (b"application/json; charset=utf-8", b"Application/JSON;charset=UTF-8"):
        reply = post_tokens(server, body, content_type)
        assert reply.status == 201 and check_reply(reply) == "success"
        assert reply.headers["x-subject-token"].startswith("MU1.")


def test_huge_login_bodies_are_400_not_a_hang(server: ServerProcess) -> None:
    big = b'{"auth": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    url = f"{server.url}/v3/auth/tokens"
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=TIMEOUT) as client:
        for content in (big, iter([big[i : i + 65536] for i in range(0, len(big), 65536)])):
            response = client.post(url, content=content, headers=headers)
            reply = Reply(response.status_code, dict(response.headers), response.content)
            expect_keystone(reply, 400, "too large")
    # A declared length far beyond the limit is refused without waiting for the body.
    head = (
        b"POST /v3/auth/tokens HTTP/1.1\r\nHost: " + host_of(server) + b"\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{"
    )
    expect_keystone(exchange(server, head), 400, "too large")


def test_wrong_password_does_not_reveal_whether_the_user_exists(server: ServerProcess) -> None:
    attempts = [
        login_body("erin", "not-her-password"),  # a real user, wrong password
        login_body("zed-nobody", "not-his-password"),  # no such user
        login_body("erin", "not-her-password", domain="no-such-domain"),  # no such account
        login_body("erin", PASSWORDS["erin"], domain="other"),  # real password, other account
        json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {"user": {"id": "f" * 32, "password": "x"}},
                    }
                }
            }
        ).encode(),
    ]
    messages = {expect_keystone(post_tokens(server, body), 401) for body in attempts}
    assert len(messages) == 1, messages
    (message,) = messages
    for word in ("erin", "zed", "exist", "unknown", "password"):
        assert word not in message.lower(), message
    # The real password still works afterwards (one failure is far from the lockout).
    assert post_tokens(server, login_body("erin", PASSWORDS["erin"])).status == 201


def test_get_tokens_without_headers(server: ServerProcess) -> None:
    expect_keystone(raw_request(server, "GET", "/v3/auth/tokens"), 401)
    expect_keystone(raw_request(server, "GET", "/v3/auth/tokens", [(b"X-Auth-Token", b"x")]), 400)


# === /v1/{project_id}/mesh-upgrade: hostile ids and bodies (nothing here may create a task) =========

UPGRADES = f"/v1/{PROJECT}/mesh-upgrade"
NO_MESH = "9b2f4c1e-0000-4000-8000-00000000dead"  # never a mesh: a body that validates still finds none


def upgrade_body(**spec: Any) -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "hostile"},
        "spec": {
            "meshId": NO_MESH,
            "upgradeStrategy": "Canary",
            "targetVersion": "1.18.7-r5",
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
            **spec,
        },
    }


def signed_send(
    server: ServerProcess,
    method: str,
    target: str,
    body: bytes,
    content_type: str | None = "application/json",
) -> Reply:
    extra = {"Content-Type": content_type} if content_type is not None else {}
    headers = signed_headers(server, method, target, body=body, extra=extra)
    return raw_request(server, method, target, headers, body)


@pytest.mark.parametrize(
    "task_id",
    [
        "a%00b",
        "%00",
        "%FF%FE",
        "%E2%9C%93",
        "x" * 7000,
        "'%20OR%20'1'='1",
        "%2E%2E",
        "a%20b%22c",
        MISSING_JOB,
        PAY_JOB,  # a job id is not a task id
    ],
)
def test_hostile_upgrade_task_ids_are_404(server: ServerProcess, task_id: str) -> None:
    target = f"{UPGRADES}/{task_id}"
    for method in ("GET", "DELETE"):
        message = expect_service(signed_send(server, method, target, b"", None), 404, "ASM.01010002")
        assert len(message) < 300 and "\x00" not in message
    step = json.dumps({"spec": {"currentStep": {"step": "Rollback"}}}).encode()
    reply = signed_send(server, "PUT", target, step)
    assert check_reply(reply) == "service" and reply.status in (400, 404), reply


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "required"),
        (b"null", "body"),
        (b"[]", "body"),
        (b"[" * 20_000 + b"]" * 20_000, "malformed JSON"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "malformed JSON"),
        (b'{"spec": "\xff"}', "malformed JSON"),
        (
            json.dumps({"kind": "Mesh", **{k: v for k, v in upgrade_body().items() if k != "kind"}}).encode(),
            "kind",
        ),
        (json.dumps({**upgrade_body(), "metadata": "x"}).encode(), "metadata"),
        (json.dumps({**upgrade_body(), "metadata": {"name": "a\u0000b"}}).encode(), "metadata.name"),
        (json.dumps({**upgrade_body(), "spec": []}).encode(), "spec"),
        (json.dumps(upgrade_body(meshId="9b2f\u0000")).encode(), "spec.meshId"),
        (json.dumps(upgrade_body(meshId="\u0000" * 10)).encode(), "spec.meshId"),
        (json.dumps(upgrade_body(meshId=5)).encode(), "spec.meshId"),
        (json.dumps(upgrade_body(meshId="m" * 10_000)).encode(), "spec.meshId"),
        (json.dumps(upgrade_body(targetVersion="1.18.7-r5\u0000")).encode(), "spec.targetVersion"),
        (json.dumps(upgrade_body(targetVersion=["1.18.7-r5"])).encode(), "spec.targetVersion"),
        (json.dumps(upgrade_body(upgradeStrategy="Canary\u0000")).encode(), "spec.upgradeStrategy"),
        (json.dumps(upgrade_body(targetType={"x": 1})).encode(), "spec.targetType"),
        (json.dumps(upgrade_body(currentStep="PreCheck")).encode(), "spec.currentStep"),
        (json.dumps(upgrade_body(currentStep={"step": "Explode"})).encode(), "spec.currentStep.step"),
        (
            json.dumps(
                upgrade_body(currentStep={"step": "DataPlaneUpgrade", "namespaces": ["a\u0000"]})
            ).encode(),
            "spec.currentStep.namespaces",
        ),
        (
            json.dumps(upgrade_body(currentStep={"step": "PreCheck", "namespaces": "shop"})).encode(),
            "spec.currentStep.namespaces",
        ),
    ],
)
def test_malformed_upgrade_bodies_are_service_400(server: ServerProcess, body: bytes, why: str) -> None:
    message = expect_service(signed_send(server, "POST", UPGRADES, body), 400, "ASM.01010001", why)
    assert len(message) < 400


def test_upgrade_body_content_type_and_size(server: ServerProcess) -> None:
    body = json.dumps(upgrade_body()).encode()
    for content_type in (None, "text/plain", "application/jsonx", "application/x-www-form-urlencoded"):
        expect_service(
            signed_send(server, "POST", UPGRADES, body, content_type), 400, "ASM.01010001", "Content-Type"
        )
    # A body that validates still names a mesh that does not exist: 404, nothing created.
    expect_service(signed_send(server, "POST", UPGRADES, body), 404, "ASM.01010002")
    # Unsigned, or signed over another body: the gateway refuses it.
    expect_gateway(raw_request(server, "POST", UPGRADES, [(b"Content-Type", b"application/json")], body))
    headers = signed_headers(server, "POST", UPGRADES, body=b"{}", extra={"Content-Type": "application/json"})
    expect_gateway(raw_request(server, "POST", UPGRADES, headers, body), "signature mismatch")
    # 2 MB, with a length and chunked: 400, not a hang.
    big = b'{"spec": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    with httpx.Client(timeout=TIMEOUT) as client:
        for content in (big, iter([big[i : i + 65536] for i in range(0, len(big), 65536)])):
            response = client.post(
                f"{server.url}{UPGRADES}", content=content, headers={"Content-Type": "application/json"}
            )
            reply = Reply(response.status_code, dict(response.headers), response.content)
            expect_service(reply, 400, "ASM.01010001", "too large")


# === fuzzing ========================================================================================

FORBIDDEN_HEADER_NAMES = {
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"expect",
    b"upgrade",
    b"host",
}
interesting_names = st.sampled_from(
    [b"Authorization", b"X-Auth-Token", b"X-Sdk-Date", b"X-Security-Token", b"X-Project-Id", b"Content-Type"]
)
token_names = st.from_regex(rb"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}\Z").filter(
    lambda name: name.lower() not in FORBIDDEN_HEADER_NAMES
)
# Any bytes but CR and LF (which would end the header, a different test).
header_values = st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
value_prefixes = st.sampled_from(
    [b"", b"SDK-HMAC-SHA256 ", b"SDK-HMAC-SHA256 Access=AKROOTEXAMPLE0000001, ", b"V11-HMAC-SHA256 ", b"MU1."]
)
fuzz_headers = st.lists(
    st.tuples(st.one_of(interesting_names, token_names), st.tuples(value_prefixes, header_values)),
    min_size=1,
    max_size=5,
)
fuzz_targets = st.sampled_from(
    [JOB_PATH, f"/v1/{OTHER_PROJECT}/mesh-job/{MISSING_JOB}", "/v3/projects", "/v3/auth/tokens", "/nope"]
)
fuzz_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@fuzz_settings
@given(
    method=st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE"]),
    target=fuzz_targets,
    headers=fuzz_headers,
)
def test_fuzz_header_values(
    server: ServerProcess, method: str, target: str, headers: list[tuple[bytes, tuple[bytes, bytes]]]
) -> None:
    sent = [(name, prefix + value) for name, (prefix, value) in headers]
    reply = raw_request(server, method, target, sent)
    kind = check_reply(reply)
    assert kind != "success", (sent, reply)  # no credential can come out of random bytes
    if kind == "gateway":
        assert target.startswith("/v1/")


raw_path_bytes = st.binary(max_size=200).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b" ", b"").replace(b"#", b"")
)
path_prefixes = st.sampled_from([f"/v1/{PROJECT}/mesh-job/".encode(), b"/v1/", b"/v3/", b"/", b"//", b""])
fuzz_credentials = st.sampled_from(
    [(), ((b"Authorization", b"garbage"),), ((b"X-Auth-Token", b"garbage"),), ((b"X-Sdk-Date", b"x"),)]
)


@fuzz_settings
@given(
    prefix=path_prefixes, path=raw_path_bytes, query=st.none() | raw_path_bytes, credentials=fuzz_credentials
)
def test_fuzz_raw_paths_and_queries(
    server: ServerProcess,
    prefix: bytes,
    path: bytes,
    query: bytes | None,
    credentials: tuple[tuple[bytes, bytes], ...],
) -> None:
    target = prefix + path + (b"?" + query if query is not None else b"")
    reply = raw_request(server, "GET", target or b"/", credentials)
    kind = check_reply(reply)
    if kind == "success":  # only unauthenticated documents (health, version discovery) can succeed
        assert not target.startswith(b"/v1/"), target


# Percent-encoded arbitrary bytes mixed with the raw characters a client might send unencoded.
raw_url_pieces = st.sampled_from(
    ["/", "..", ".", "%", "%2", "%zz", "%2F", "%00", "~", "-", "_", ";", ",", "=", "@", ":", "!", "$",
     "&", "'", "(", ")", "*", "+", "|", "^", "[", "]", "{", "}", "\"", "<", ">", "\\", "`"]
)  # fmt: skip
encoded_pieces = st.binary(min_size=1, max_size=12).map(lambda b: quote_from_bytes(b, safe=""))
url_text = st.lists(
    st.one_of(encoded_pieces, raw_url_pieces, st.text("abc019-", max_size=5)), max_size=12
).map("".join)
query_pairs = st.lists(
    st.tuples(url_text.filter(lambda s: "&" not in s), url_text.filter(lambda s: "&" not in s)), max_size=4
)


@fuzz_settings
@given(
    call=st.sampled_from([("GET", "mesh-job"), ("GET", "mesh-upgrade"), ("DELETE", "mesh-upgrade")]),
    job=url_text,
    pairs=query_pairs,
    slash=st.booleans(),
)
def test_fuzz_signed_paths_get_past_authentication(
    server: ServerProcess, call: tuple[str, str], job: str, pairs: list[tuple[str, str]], slash: bool
) -> None:
    """Signed for the exact raw path: whatever the bytes, the server agrees with the SDK's signer."""
    method, resource = call
    query = "&".join(f"{key}={value}" for key, value in pairs)
    target = f"/v1/{PROJECT}/{resource}/{job}" + ("/" if slash else "") + (f"?{query}" if query else "")
    reply = raw_request(server, method, target, signed_headers(server, method, target))
    kind = check_reply(reply)
    if kind == "refused":
        return
    assert kind in ("service", "success"), (target, reply)
    if kind == "success":
        body = reply.json()
        if body.get("kind") == "MeshUpgradeList":
            # The path collapsed onto the collection, which GET lists (the root user sees every task).
            assert (method, resource) == ("GET", "mesh-upgrade"), (target, reply)
            assert isinstance(body["items"], list), (target, reply)
            return
        assert body["metadata"]["uid"] == PAY_JOB  # e.g. the job id spelt with escapes
        return
    listing = (method, resource) == ("GET", "mesh-upgrade")
    if reply.status == 400 and listing:  # the list's own query parameters, malformed
        assert reply.json()["errorMsg"].startswith(("limit:", "marker:", "meshId:")), (target, reply)
        return
    # 405: the path collapsed onto the collection (``/mesh-upgrade/`` is GET and POST only).
    collapsed = reply.status == 405 and (method, resource) == ("DELETE", "mesh-upgrade")
    assert reply.status == 404 or collapsed, (target, reply)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
login_shapes = st.one_of(
    json_values,
    st.builds(lambda v: {"auth": v}, json_values),
    st.builds(lambda v: {"auth": {"identity": v}}, json_values),
    st.builds(lambda v: {"auth": {"identity": {"methods": ["password"], "password": v}}}, json_values),
    st.builds(
        lambda user, scope: {
            "auth": {"identity": {"methods": ["password"], "password": {"user": user}}, "scope": scope}
        },
        json_values,
        json_values,
    ),
)


upgrade_shapes = st.one_of(
    json_values,
    st.builds(lambda v: {**upgrade_body(), "spec": v}, json_values),
    st.builds(lambda v: {**upgrade_body(), "metadata": v}, json_values),
    st.builds(
        lambda key, v: upgrade_body(**{key: v}), st.sampled_from(list(upgrade_body()["spec"])), json_values
    ),
    st.builds(lambda v: upgrade_body(currentStep=v), json_values),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=upgrade_shapes)
def test_fuzz_upgrade_documents(server: ServerProcess, document: Any) -> None:
    reply = signed_send(server, "POST", UPGRADES, json.dumps(document).encode())
    # Every document names no existing mesh (or none at all): it can only be refused.
    assert check_reply(reply) == "service" and reply.status in (400, 404), (document, reply)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=login_shapes)
def test_fuzz_login_documents(server: ServerProcess, document: Any) -> None:
    reply = post_tokens(server, json.dumps(document).encode())
    assert check_reply(reply) == "keystone" and reply.status in (400, 401), (document, reply)


def test_the_server_survived(server: ServerProcess, log_mark: int) -> None:
    """Runs last in this module: after all of the above the server still answers, and logged no crash."""
    assert server.process.poll() is None, server.log()
    reply = raw_request(server, "GET", "/healthz")
    assert reply.status == 200 and reply.json() == {"status": "ok"}
    assert signed_get(server, JOB_PATH).status == 200
    written = server.log()[log_mark:]
    assert "Traceback" not in written and "unexpected error" not in written, written[-5000:]
