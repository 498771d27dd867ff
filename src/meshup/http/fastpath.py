"""``GET /v1/{project_id}/mesh-job/{job_id}`` answered in front of the web framework.

This is the request every client polls. It is matched here, before routing, and answered by the
same coroutine as the framework's route of the same path (``jobs.routes.read_mesh_job``), with
the same error mapping; the framework's route documents it and answers every other method.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from meshup.errors import AuthenticationFailed, MeshupError
from meshup.http.errors import error_response
from meshup.http.handlers import DENIALS, record_denial
from meshup.http.requests import incoming_without_body, request_id
from meshup.http.runtime import Runtime
from meshup.iam.actions import GET_UPGRADE_JOB
from meshup.jobs.events import JobEvents, wants_events
from meshup.jobs.routes import ROUTE, read_mesh_job

MESH_JOB = re.compile(r"/v1/([^/]+)/mesh-job/([^/]+)")


class _Route:
    """What the middleware reads for the metrics label (like a framework route)."""

    path = ROUTE


_ROUTE = _Route()


class MeshJobFastPath:
    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        self.events = JobEvents(rt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = MESH_JOB.fullmatch(scope["path"])
            if match is not None:
                scope["route"] = _ROUTE
                if wants_events(scope):  # live job events; a plain GET never gets here
                    await self.events.answer(scope, receive, send, match.group(1), match.group(2))
                    return
                await self.answer(scope, receive, send, match.group(1), match.group(2))
                return
        await self.app(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send, project_id: str, job_id: str) -> None:
        try:
            body = await read_mesh_job(self.rt, scope, project_id, job_id)
        except Exception as exc:  # mapped as the framework's handlers map it (http.errors)
            response = error_response(
                exc, path=scope["path"], request_id=request_id(scope), metrics=self.rt.metrics
            )
            if response.status_code in DENIALS and isinstance(exc, (MeshupError, AuthenticationFailed)):
                await run_in_threadpool(  # audited, like every denied call
                    record_denial,
                    self.rt,
                    incoming_without_body(scope),
                    exc,
                    template=ROUTE,
                    path_params={"job_id": job_id},
                    project_id=project_id,
                    request_id=request_id(scope),
                    action=GET_UPGRADE_JOB,
                )
            await response(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
