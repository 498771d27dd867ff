"""``GET /v1/{project_id}/mesh-job/{job_id}``: the API every client polls, so it stays lean."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.http.requests import incoming, note_caller
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.jobs.schemas import MeshJob

router = APIRouter(tags=["mesh jobs"])


@router.get(
    "/v1/{project_id}/mesh-job/{job_id}",
    summary="Querying a Mesh Upgrade Task",
    response_model=None,
    responses={
        200: {"model": MeshJob, "description": "The job and its subtree."},
        **error_responses(401, 403, 404, 503),
    },
    openapi_extra={"x-iam-action": "asm:mesh:getUpgradeJob"},
)
async def get_mesh_job(project_id: str, job_id: str, request: Request) -> Response:
    rt = runtime(request)
    request_data = await incoming(request)
    # Short indexed reads: done inline, a thread hop would cost more than the queries.
    with rt.db.read() as conn:
        caller = rt.identity.authenticate(conn, request_data, project_id)
        note_caller(request, caller)
        body = rt.jobs.get_document(conn, caller, project_id, job_id, request_data.source_ip)
    return Response(body, media_type="application/json")
