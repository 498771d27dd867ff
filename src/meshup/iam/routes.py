"""Keystone-compatible identity endpoints: tokens and the project lookup of the official SDK."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meshup.errors import AuthenticationFailed, InvalidRequest
from meshup.http.envelopes import json_response, keystone_error
from meshup.http.requests import incoming, json_body, note_caller, request_id, source_ip
from meshup.http.runtime import runtime
from meshup.iam.login import LoginThrottled, inspect_token, parse_login, token_body
from meshup.iam.schemas import KeystoneError, ProjectList, TokenResponse

router = APIRouter(tags=["identity"])


def client_address(request: Request) -> str:
    """The peer address as the server sees it (behind a proxy: the proxy's)."""
    client = request.scope.get("client")
    return str(client[0]) if client else ""


def _keystone(status: int, text: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": KeystoneError, "description": f"{text} (Keystone error envelope)."}}


_TOKEN_DOC: dict[int | str, dict[str, Any]] = {
    201: {"model": TokenResponse, "description": "Token issued; the token is in the X-Subject-Token header."},
    **_keystone(400, "Malformed request"),
    **_keystone(401, "Authentication failed"),
    429: {
        "model": KeystoneError,
        "description": "Too many failed logins from this address, or too many logins in progress; "
        "retry after the seconds in Retry-After (Keystone error envelope).",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    },
    **_keystone(503, "Database unreachable"),
}
_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}},
    }
}


@router.post(
    "/v3/auth/tokens",
    status_code=201,
    responses=_TOKEN_DOC,
    summary="Obtain a token (password)",
    openapi_extra=_TOKEN_BODY,
)
async def create_token(request: Request) -> Response:
    rt = runtime(request)
    try:
        body = json_body(await incoming(request, max_body=64 * 1024))
        login_request = parse_login(body)
    except InvalidRequest as exc:
        return keystone_error(400, exc.message)

    audit = (request_id(request), source_ip(request))
    try:
        issued = await rt.login.attempt(rt.db, login_request, client_address(request))
    except LoginThrottled as exc:
        refused = keystone_error(429, exc.message)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    except AuthenticationFailed as failure:
        await run_in_threadpool(rt.audit.login, login_request, None, *audit)
        rt.metrics.auth_failures.labels("password").inc()
        return keystone_error(401, failure.why)
    await run_in_threadpool(rt.audit.login, login_request, issued, *audit)
    request.scope.setdefault("state", {})["principal"] = f"{issued.account.name}/{issued.user.name}"
    body_out = token_body(issued, issued.account, issued.user, issued.project, rt.settings.advertised_url)
    return json_response(body_out, 201, headers={"X-Subject-Token": issued.token})


@router.get(
    "/v3/auth/tokens",
    summary="Validate a token (X-Auth-Token: the caller, X-Subject-Token: the token to check)",
    responses={
        200: {"model": TokenResponse, "description": "The token is valid."},
        **_keystone(400, "X-Subject-Token is missing"),
        **_keystone(401, "The caller's token is not valid"),
        **_keystone(404, "The subject token is not valid"),
    },
    openapi_extra={
        "parameters": [
            {
                "name": "X-Subject-Token",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
        ]
    },
)
async def check_token(request: Request) -> Response:
    rt = runtime(request)
    caller_token = request.headers.get("x-auth-token")
    subject = request.headers.get("x-subject-token")
    if not caller_token:
        return keystone_error(401, "X-Auth-Token is required")
    if not subject:
        return keystone_error(400, "X-Subject-Token is required")
    now = rt.clock.now()
    with rt.db.read() as conn:
        try:
            inspect_token(conn, rt.identity.tokens, caller_token, now)
        except AuthenticationFailed as exc:
            rt.metrics.auth_failures.labels("token").inc()
            return keystone_error(401, exc.why)
        try:
            issued = inspect_token(conn, rt.identity.tokens, subject, now)
        except AuthenticationFailed:
            return keystone_error(404, "Could not find token.")
    body_out = token_body(issued, issued.account, issued.user, issued.project, rt.settings.advertised_url)
    return json_response(body_out, 200, headers={"X-Subject-Token": subject})


@router.get(
    "/v3/projects",
    summary="List the caller's projects (AK/SK or token)",
    responses={
        200: {"model": ProjectList, "description": "Projects of the caller's account."},
        **_keystone(401, "Not authenticated"),
    },
)
async def list_projects(request: Request, name: str | None = None) -> Response:
    rt = runtime(request)
    try:
        with rt.db.read() as conn:
            caller = rt.identity.authenticate(conn, await incoming(request), None)
    except AuthenticationFailed as exc:
        rt.metrics.auth_failures.labels(exc.code).inc()
        return keystone_error(401, exc.why)
    note_caller(request, caller)
    account_id = caller.principal.account.id
    projects = [
        {"id": project_id, "name": project_name, "domain_id": account_id, "enabled": True}
        for project_id, project_name in sorted(caller.principal.projects.items(), key=lambda p: p[1])
        if name is None or project_name == name
    ]
    return json_response(
        {"projects": projects, "links": {"self": f"{rt.settings.advertised_url}/v3/projects"}}
    )


def _v3_version(url: str) -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "stable",
        "updated": "2020-01-01T00:00:00Z",
        "links": [{"rel": "self", "href": f"{url}/v3/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    }


@router.get("/", summary="Identity API versions (Keystone version discovery)")
async def versions(request: Request) -> Response:
    """What Keystone answers at its root, so that clients given the bare server URL find ``/v3``.

    Keystone says ``300 Multiple Choices``; this server never answers 3xx (asm-api.md §1), and
    keystoneauth accepts the same document with ``200``.
    """
    return json_response({"versions": {"values": [_v3_version(runtime(request).settings.advertised_url)]}})


@router.get("/v3", summary="Identity API version")
async def version(request: Request) -> Response:
    return json_response({"version": _v3_version(runtime(request).settings.advertised_url)})
