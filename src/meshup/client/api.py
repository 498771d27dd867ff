"""HTTP calls to a meshup endpoint, authenticated as the official clients authenticate.

AK/SK requests carry the headers the official SDK signs (``Content-Type``, ``Host``,
``User-Agent``, ``X-Project-Id``, ``X-Sdk-Date``, and ``X-Security-Token`` for temporary keys)
and its ``SDK-HMAC-SHA256`` signature; password logins get a Keystone token from
``POST /v3/auth/tokens`` and send it as ``X-Auth-Token``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from meshup import __version__
from meshup.client.credentials import AccessKey, Password, Profile
from meshup.client.errors import ApiError, ConnectionFailed, CredentialsError, RequestTimedOut
from meshup.iam.signing import sign

USER_AGENT = f"meshup-cli/{__version__}"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"


def _segment(value: str) -> str:
    return quote(value, safe="")


def error_from(response: httpx.Response) -> ApiError:
    """The error of any envelope the server uses (gateway, service, Keystone), like the SDK reads it."""
    request_id = response.headers.get("x-request-id")
    code, message = f"HTTP {response.status_code}", response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if "error_code" in body:
            code, message = str(body["error_code"]), str(body.get("error_msg", message))
            request_id = request_id or body.get("request_id")
        elif "errorCode" in body:
            code, message = str(body["errorCode"]), str(body.get("errorMsg", message))
        elif isinstance(body.get("error"), dict):
            error = body["error"]
            code = str(error.get("title") or error.get("code") or code)
            message = str(error.get("message", message))
    return ApiError(response.status_code, code, message, request_id)


class Api:
    """One endpoint, one identity; the project id is found once, on first need."""

    def __init__(
        self, profile: Profile, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.profile = profile
        self._http = httpx.Client(base_url=profile.endpoint, timeout=timeout, transport=transport)
        self._host = urlsplit(profile.endpoint).netloc
        self._token: str | None = None
        self._project_id = profile.project_id

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- authentication --------------------------------------------------------------------------

    @property
    def project_id(self) -> str:
        if self._project_id is None:
            if isinstance(self.profile.auth, Password):
                self._login(self.profile.auth)
            else:
                self._project_id = self._lookup_project()
        assert self._project_id is not None
        return self._project_id

    def _login(self, auth: Password) -> None:
        if auth.password is None:
            raise CredentialsError(f"user {auth.user}: no password given (--password or MESHUP_PASSWORD)")
        scope: dict[str, Any]
        if self._project_id is not None:
            scope = {"project": {"id": self._project_id}}
        elif self.profile.project_name is not None:
            scope = {"project": {"name": self.profile.project_name, "domain": {"name": auth.domain}}}
        else:
            raise CredentialsError("a password login needs a project: give --project-id or --project")
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": auth.user,
                            "password": auth.password,
                            "domain": {"name": auth.domain},
                        }
                    },
                },
                "scope": scope,
            }
        }
        response = self._send(
            "POST",
            "/v3/auth/tokens",
            json.dumps(body).encode(),
            {"Content-Type": JSON, "User-Agent": USER_AGENT},
            stream=False,
        )
        if response.status_code != 201:
            raise error_from(response)
        token = response.headers.get("x-subject-token")
        try:
            project_id = response.json()["token"]["project"]["id"]
        except (ValueError, KeyError, TypeError):
            project_id = None
        if not token or not isinstance(project_id, str):
            raise ConnectionFailed(
                f"{self.profile.endpoint} answered the login without a project-scoped token"
            )
        self._token, self._project_id = token, project_id

    def _lookup_project(self) -> str:
        """As the SDK does without a project id: ``GET /v3/projects`` (by name when one is given)."""
        name = self.profile.project_name
        query = f"?name={quote(name, safe='')}" if name else ""
        projects = self._call("GET", f"/v3/projects{query}", project_scoped=False).get("projects", [])
        if len(projects) == 1:
            return str(projects[0]["id"])
        if name:
            raise CredentialsError(f"no project named {name} for these credentials")
        names = ", ".join(sorted(str(p.get("name")) for p in projects)) or "none"
        raise CredentialsError(f"these credentials reach several projects ({names}): give --project-id")

    def _headers(self, method: str, path: str, body: bytes, *, project_scoped: bool) -> dict[str, str]:
        headers = {"Content-Type": JSON, "User-Agent": USER_AGENT}
        auth = self.profile.auth
        if isinstance(auth, Password):
            if self._token is None:
                self._login(auth)
            assert self._token is not None
            headers["X-Auth-Token"] = self._token
            return headers
        assert isinstance(auth, AccessKey)
        if project_scoped:
            headers["X-Project-Id"] = self.project_id
        if auth.security_token:
            headers["X-Security-Token"] = auth.security_token
        headers["Host"] = self._host
        sdk_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers["X-Sdk-Date"] = sdk_date
        headers["Authorization"] = sign(method, path, headers, body, auth.ak, auth.sk, sdk_date=sdk_date)
        return headers

    # --- transport -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        stream: bool,
        timeout: float | None = None,
    ) -> httpx.Response:
        request = self._http.build_request(
            method, path, content=body or None, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT
        )
        try:
            return self._http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise RequestTimedOut(f"{self.profile.endpoint} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {self.profile.endpoint}: {exc}") from None

    def _path(self, template: str, **segments: str) -> str:
        project = self.project_id
        return template.format(project_id=_segment(project), **{k: _segment(v) for k, v in segments.items()})

    def _exchange(
        self,
        method: str,
        path: str,
        content: bytes = b"",
        *,
        project_scoped: bool = True,
        stream: bool = False,
        timeout: float | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request; an expired token is renewed once (a watch may outlive it)."""
        for attempt in (1, 2):
            headers = self._headers(method, path, content, project_scoped=project_scoped)
            headers.update(extra or {})
            response = self._send(method, path, content, headers, stream=stream, timeout=timeout)
            if response.status_code < 400:
                return response
            response.read()
            error = error_from(response)
            response.close()
            if attempt == 1 and error.code == "APIGW.0307" and isinstance(self.profile.auth, Password):
                self._token = None
                continue
            raise error
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, body: Any = None, *, project_scoped: bool = True) -> Any:
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = self._exchange(method, path, content, project_scoped=project_scoped)
        try:
            return response.json()
        except ValueError:
            raise ConnectionFailed(
                f"{self.profile.endpoint} answered {method} {path} with a body that is not JSON"
            ) from None

    # --- resources -------------------------------------------------------------------------------

    def list_traces(self, filters: dict[str, str]) -> dict[str, Any]:
        """CTS ``ListTraces``: ``{"traces": [...], "meta_data": {"count", "marker"}}``."""
        query = urllib.parse.urlencode(filters)
        return dict(self._call("GET", self._path("/v3/{project_id}/traces") + (f"?{query}" if query else "")))

    def list_meshes(self) -> dict[str, Any]:
        """The MeshList document (``items`` holds the meshes)."""
        return dict(self._call("GET", self._path("/v1/{project_id}/meshes")))

    def get_mesh(self, mesh_id: str) -> dict[str, Any]:
        return dict(self._call("GET", self._path("/v1/{project_id}/meshes/{m}", m=mesh_id)))

    def create_mesh(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", self._path("/v1/{project_id}/meshes"), body))

    def delete_mesh(self, mesh_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", self._path("/v1/{project_id}/meshes/{m}", m=mesh_id)))

    def create_upgrade(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", self._path("/v1/{project_id}/mesh-upgrade"), body))

    def list_upgrades(self, mesh_id: str | None = None) -> dict[str, Any]:
        """Every upgrade task the caller may see (of one mesh if given), newest first: the
        ``MeshUpgradeList`` pages followed to the end, as one document."""
        items: list[Any] = []
        marker: str | None = None
        while True:
            query = {k: v for k, v in (("limit", "1000"), ("marker", marker), ("meshId", mesh_id)) if v}
            path = self._path("/v1/{project_id}/mesh-upgrade") + "?" + urlencode(sorted(query.items()))
            page = dict(self._call("GET", path))
            items.extend(page.get("items") or [])
            marker = page.get("nextMarker")
            if not marker:
                return {"apiVersion": "v1", "kind": "MeshUpgradeList", "items": items}

    def get_upgrade(self, task_id: str) -> dict[str, Any]:
        return dict(self._call("GET", self._path("/v1/{project_id}/mesh-upgrade/{t}", t=task_id)))

    def put_upgrade(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", self._path("/v1/{project_id}/mesh-upgrade/{t}", t=task_id), body))

    def delete_upgrade(self, task_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", self._path("/v1/{project_id}/mesh-upgrade/{t}", t=task_id)))

    def get_job(self, job_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        path = self._path("/v1/{project_id}/mesh-job/{j}", j=job_id)
        return dict(self._exchange("GET", path, timeout=timeout).json())

    @contextmanager
    def job_events(
        self, job_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """``GET mesh-job`` asking for an event stream; the caller reads whichever type comes back."""
        path = self._path("/v1/{project_id}/mesh-job/{j}", j=job_id)
        extra = {"Accept": f"{EVENT_STREAM}, {JSON};q=0.5"}
        if last_event_id is not None:
            extra["Last-Event-ID"] = last_event_id
        response = self._exchange("GET", path, stream=True, timeout=timeout, extra=extra)
        try:
            yield response
        finally:
            response.close()
