"""``GET /v1/{project_id}/mesh-job/{job_id}``: the API every client polls, so it stays lean.

``read_mesh_job`` is the one implementation. A served app answers the GET from the fast entry in
front of the framework (``http.fastpath``); the framework's route documents it in the OpenAPI
schema and calls the same coroutine.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Scope

from meshup.http.requests import incoming_without_body, note_caller
from meshup.http.runtime import Runtime, runtime
from meshup.http.schemas import error_responses
from meshup.jobs.schemas import MeshJob

router = APIRouter(tags=["mesh jobs"])
ROUTE = "/v1/{project_id}/mesh-job/{job_id}"
EVENTS_DESCRIPTION = (
    "meshup extension, with `Accept: text/event-stream`: live job events. Each event's `data` is "
    "the job document this GET returns, sent whenever a node of the job's tree changes; `id` is "
    "the tree's change marker (send it back as `Last-Event-ID` to get the document again only if "
    "it changed since); `: keep-alive` comments every 15 s; an `error` event with the error "
    "envelope ends a stream whose caller is no longer allowed. The stream ends after the job "
    "reaches Success or Failed; 204 when the job has ended and `Last-Event-ID` is current."
)


async def read_mesh_job(rt: Runtime, scope: Scope, project_id: str, job_id: str) -> bytes:
    """Authenticate once, then read the tree. A request without credentials, a malformed one or
    a bad token reads nothing; others read the IAM epoch and, if this process has not cached it,
    the credential."""
    request = incoming_without_body(scope)
    credential = rt.identity.presented(request)
    reader = rt.jobs.reader
    snapshot = await reader.snapshot()
    caller = await rt.identity.authenticate_at(snapshot.epoch, credential, project_id, reader.off_loop)
    note_caller(scope, caller)
    return await rt.jobs.document(
        caller, project_id, job_id, request.source_ip, generation=snapshot.generation
    )


@router.get(
    ROUTE,
    summary="Querying a Mesh Upgrade Task",
    response_model=None,
    responses={
        200: {
            "model": MeshJob,
            "description": "The job and its subtree.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "description": EVENTS_DESCRIPTION,
                }
            },
        },
        204: {"description": "Live job events only: the job has ended and `Last-Event-ID` is current."},
        **error_responses(401, 403, 404, 503),
    },
    openapi_extra={"x-iam-action": "asm:mesh:getUpgradeJob"},
)
async def get_mesh_job(project_id: str, job_id: str, request: Request) -> Response:
    body = await read_mesh_job(runtime(request), request.scope, project_id, job_id)
    return Response(body, media_type="application/json")
