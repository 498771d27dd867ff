"""The client's requests, checked on an in-memory transport: signed as the official SDK signs,
token logins, project look-ups, and every error envelope read as the SDK reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from meshup.client.api import Api, error_from
from meshup.client.credentials import AccessKey, Password, Profile
from meshup.client.errors import ApiError, ConnectionFailed, CredentialsError
from meshup.iam.signing import SignedRequest, parse_authorization, verify

ENDPOINT = "http://127.0.0.1:18080"
PROJECT = "0123456789abcdef0123456789abcdef"
AK, SK = "AKCLIENT000000000001", "ClientSecretKeyExample00000000000000001"
MESH = {"metadata": {"uid": "m-1", "name": "mesh-a"}}


class Recorder:
    """A fake server: answers with ``handler`` and keeps every request it saw."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)


def api(
    auth: AccessKey | Password, handler: Callable[[httpx.Request], httpx.Response], **profile: Any
) -> Api:
    values: dict[str, Any] = {"project_id": PROJECT, "project_name": None, **profile}
    settings = Profile(ENDPOINT, auth, values["project_id"], values["project_name"], "test")
    return Api(settings, transport=httpx.MockTransport(handler))


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"X-Request-Id": "r" * 32, **headers})


def test_aksk_requests_carry_the_sdks_headers_and_its_signature() -> None:
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer import signer as sdk_signer

    seen = Recorder(lambda request: ok(MESH, 201))
    body = {"metadata": {"name": "mesh-a"}, "spec": {"note": "ü"}}
    with api(AccessKey(AK, SK), seen) as client:
        client.create_mesh(body)
    [request] = seen.requests
    assert request.url.path == f"/v1/{PROJECT}/meshes"
    parsed = parse_authorization(request.headers["authorization"])
    assert parsed.algorithm == "SDK-HMAC-SHA256" and parsed.access_key == AK
    assert parsed.signed_headers == ("content-type", "host", "user-agent", "x-project-id", "x-sdk-date")
    assert request.headers["x-project-id"] == PROJECT
    assert request.headers["host"] == "127.0.0.1:18080"
    assert request.headers["content-type"] == "application/json"

    # The official SDK's signer, given the same request, writes the same Authorization header.
    sdk_request = SdkRequest(
        method="POST",
        schema="http",
        host="127.0.0.1:18080",
        resource_path=request.url.raw_path.decode(),
        query_params=[],
        header_params={name: request.headers[name] for name in parsed.signed_headers},
        body=request.content,
    )
    sdk_signer.Signer(SimpleNamespace(ak=AK, sk=SK)).sign(sdk_request)
    assert sdk_request.header_params["Authorization"] == request.headers["authorization"]

    # And the server's verifier accepts it.
    headers = {name: value.encode("latin-1") for name, value in request.headers.items()}
    signed = SignedRequest("POST", request.url.raw_path, b"", headers, request.content)
    verify(signed, parsed, SK, None)


def test_a_temporary_key_signs_its_security_token() -> None:
    seen = Recorder(lambda request: ok({"items": []}))
    with api(AccessKey(AK, SK, "session-token"), seen) as client:
        client.list_meshes()
    [request] = seen.requests
    assert request.headers["x-security-token"] == "session-token"
    assert "x-security-token" in parse_authorization(request.headers["authorization"]).signed_headers


def test_without_a_project_id_the_only_project_of_the_key_is_looked_up() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/projects":
            return ok({"projects": [{"id": PROJECT, "name": "cn-north-4"}]})
        return ok({"items": [MESH]})

    seen = Recorder(handler)
    with api(AccessKey(AK, SK), seen, project_id=None) as client:
        assert client.list_meshes()["items"] == [MESH]
        client.list_meshes()
    lookup, first, second = seen.requests
    assert lookup.url.path == "/v3/projects" and "x-project-id" not in lookup.headers
    assert lookup.url.query == b""
    assert first.url.path == second.url.path == f"/v1/{PROJECT}/meshes"  # looked up once


def test_a_project_name_is_looked_up_by_name() -> None:
    seen = Recorder(lambda request: ok({"projects": [{"id": PROJECT, "name": "eu-west-0"}]}))
    with api(AccessKey(AK, SK), seen, project_id=None, project_name="eu-west-0") as client:
        assert client.project_id == PROJECT
    assert seen.requests[0].url.params["name"] == "eu-west-0"


def test_several_projects_and_no_name_is_an_error_naming_them() -> None:
    projects = [{"id": "a" * 32, "name": "cn-north-4"}, {"id": "b" * 32, "name": "eu-west-0"}]
    with (
        api(AccessKey(AK, SK), Recorder(lambda r: ok({"projects": projects})), project_id=None) as client,
        pytest.raises(CredentialsError, match=r"cn-north-4, eu-west-0"),
    ):
        _ = client.project_id


def _token_server(expire_first: bool = False) -> Recorder:
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/auth/tokens":
            issued.append(f"token-{len(issued) + 1}")
            body = {"token": {"project": {"id": PROJECT, "name": "cn-north-4"}, "expires_at": "…"}}
            return ok(body, 201, **{"X-Subject-Token": issued[-1]})
        if expire_first and request.headers.get("x-auth-token") == "token-1":
            return ok({"error_code": "APIGW.0307", "error_msg": "token expired", "request_id": "x"}, 401)
        return ok({"items": []})

    return Recorder(handler)


def test_password_login_scopes_a_token_and_sends_it() -> None:
    seen = _token_server()
    with api(
        Password("alice", "acme", "Alice-Passw0rd!"), seen, project_id=None, project_name="cn-north-4"
    ) as c:
        c.list_meshes()
    login, listing = seen.requests
    body = json.loads(login.content)
    assert body["auth"]["identity"]["password"]["user"] == {
        "name": "alice",
        "password": "Alice-Passw0rd!",
        "domain": {"name": "acme"},
    }
    assert body["auth"]["scope"] == {"project": {"name": "cn-north-4", "domain": {"name": "acme"}}}
    assert listing.url.path == f"/v1/{PROJECT}/meshes"
    assert listing.headers["x-auth-token"] == "token-1"
    assert "authorization" not in listing.headers


def test_an_expired_token_is_renewed_once() -> None:
    seen = _token_server(expire_first=True)
    with api(Password("alice", "acme", "pw"), seen) as client:
        client.list_meshes()
    paths = [(r.url.path, r.headers.get("x-auth-token")) for r in seen.requests]
    assert paths == [
        ("/v3/auth/tokens", None),
        (f"/v1/{PROJECT}/meshes", "token-1"),
        ("/v3/auth/tokens", None),
        (f"/v1/{PROJECT}/meshes", "token-2"),
    ]
    assert json.loads(seen.requests[0].content)["auth"]["scope"] == {"project": {"id": PROJECT}}


def test_a_password_login_without_a_password_says_how_to_give_one() -> None:
    with (
        api(Password("alice", "acme", None), Recorder(lambda r: ok({}))) as client,
        pytest.raises(CredentialsError, match="--password"),
    ):
        client.list_meshes()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {
                "error_code": "APIGW.0301",
                "error_msg": "Incorrect IAM authentication information: x",
                "request_id": "b",
            },
            "APIGW.0301: Incorrect IAM authentication information: x (request id hdr)",
        ),
        (
            404,
            {"errorCode": "ASM.01010002", "errorMsg": "mesh m not found"},
            "ASM.01010002: mesh m not found (request id hdr)",
        ),
        (
            401,
            {"error": {"code": 401, "title": "Unauthorized", "message": "bad password"}},
            "Unauthorized: bad password (request id hdr)",
        ),
        (502, "<html>bad gateway</html>", "HTTP 502: Bad Gateway (request id hdr)"),
    ],
)
def test_errors_read_every_envelope(status: int, body: Any, expected: str) -> None:
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    response = httpx.Response(status, content=content, headers={"X-Request-Id": "hdr"})
    assert str(error_from(response)) == expected


def test_a_gateway_error_without_the_header_keeps_the_bodys_request_id() -> None:
    response = httpx.Response(
        401, json={"error_code": "APIGW.0301", "error_msg": "no", "request_id": "body-id"}
    )
    assert error_from(response).request_id == "body-id"


def test_error_answers_raise_api_errors() -> None:
    answer = {"errorCode": "ASM.01010003", "errorMsg": "Complete is not allowed now"}
    with (
        api(AccessKey(AK, SK), Recorder(lambda r: ok(answer, 409))) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.put_upgrade("t", {"spec": {}})
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (
        409,
        "ASM.01010003",
        "r" * 32,
    )


def test_path_segments_are_escaped() -> None:
    seen = Recorder(lambda request: ok({}))
    with api(AccessKey(AK, SK), seen) as client:
        client.get_upgrade("../x y")
    assert seen.requests[0].url.raw_path == f"/v1/{PROJECT}/mesh-upgrade/..%2Fx%20y".encode()


def test_an_unreachable_endpoint_is_a_connection_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with api(AccessKey(AK, SK), refuse) as client, pytest.raises(ConnectionFailed, match="cannot reach"):
        client.get_job("j")
