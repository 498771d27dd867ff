"""``GET /v1/{project_id}/mesh-job/{job_id}`` served without the web framework's per-request work.

This is the request every client polls. It is matched here, before routing, and answered with the
same services, checks, envelopes and metrics as every other route (the framework's route of the
same path documents it in the OpenAPI schema and answers everything else, such as other methods).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from meshup.errors import AuthenticationFailed, MeshupError
from meshup.http.errors import error_response
from meshup.http.handlers import DENIALS, record_denial
from meshup.http.runtime import Runtime
from meshup.iam.actions import GET_UPGRADE_JOB
from meshup.iam.service import CacheMiss, IncomingRequest
from meshup.jobs.service import JOB_ID
from meshup.store.hot import HotReader

MESH_JOB = re.compile(r"/v1/([^/]+)/mesh-job/([^/]+)")
_JSON = [(b"content-type", b"application/json")]


class _Route:
    """What the middleware reads for the metrics label (like a framework route)."""

    path = "/v1/{project_id}/mesh-job/{job_id}"


ROUTE = _Route()


class MeshJobFastPath:
    def __init__(self, app: ASGIApp, rt: Runtime, reader: HotReader) -> None:
        self.app = app
        self.rt = rt
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = MESH_JOB.fullmatch(scope["path"])
            if match is not None:
                scope["route"] = ROUTE
                status, body = await self.answer(scope, match.group(1), match.group(2))
                await send({"type": "http.response.start", "status": status, "headers": _JSON})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def answer(self, scope: Scope, project_id: str, job_id: str) -> tuple[int, bytes]:
        state: dict[str, Any] = scope.setdefault("state", {})
        headers: dict[str, bytes] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            if key not in headers:
                headers[key] = value
        client = scope.get("client")
        request = IncomingRequest(
            method="GET",
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=b"",
            source_ip=client[0] if client else "",
        )
        rt = self.rt
        try:
            bundle = await self.reader.bundle(job_id) if JOB_ID.fullmatch(job_id) else None
            epoch = bundle.epoch if bundle is not None else None
            try:
                if epoch is None:
                    raise CacheMiss
                caller = rt.identity.authenticate_cached(epoch, request, project_id)
            except CacheMiss:
                with rt.db.read() as conn:
                    caller = rt.identity.authenticate(conn, request, project_id)
            state["principal"] = caller.principal.label
            return 200, rt.jobs.document(caller, project_id, job_id, bundle, request.source_ip)
        except (AuthenticationFailed, MeshupError) as exc:
            response = error_response(
                exc, path=scope["path"], request_id=str(state.get("request_id", "")), metrics=rt.metrics
            )
            if response.status_code in DENIALS:  # audited, like every denied call
                await run_in_threadpool(
                    record_denial, rt, request, exc, **_audited(scope, project_id, job_id)
                )
            return response.status_code, bytes(response.body)


def _audited(scope: Scope, project_id: str, job_id: str) -> dict[str, Any]:
    return {
        "template": ROUTE.path,
        "path_params": {"job_id": job_id},
        "project_id": project_id,
        "request_id": str(scope.get("state", {}).get("request_id", "")),
        "action": GET_UPGRADE_JOB,
    }
