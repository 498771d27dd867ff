"""``/v3/{project_id}/traces``: the Cloud Trace Service's ``ListTraces`` over meshup's audit trail."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.audit.model import epoch_ms
from meshup.audit.schemas import TraceList, parse_query, render_traces
from meshup.http.handlers import call, document, operation
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.iam.actions import LIST_TRACES

router = APIRouter(tags=["audit"])


@router.get(
    "/v3/{project_id}/traces",
    summary="List the project's traces, newest first (CTS ListTraces)",
    responses={
        200: {"model": TraceList, "description": "One page of traces; meta_data.marker names the next."},
        **error_responses(400, 401, 403, 503),
    },
    openapi_extra=operation(LIST_TRACES),
)
async def list_traces(project_id: str, request: Request) -> Response:
    rt = runtime(request)
    params = request.query_params
    traces, marker = await call(
        request,
        project_id,
        LIST_TRACES,
        lambda caller, data: rt.audit.list_traces(
            caller, project_id, parse_query(params, epoch_ms(rt.clock.now())), data.source_ip
        ),
    )
    return document(render_traces(traces, marker))
