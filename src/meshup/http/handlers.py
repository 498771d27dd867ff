"""The shape every authenticated ASM route shares: read the request, authenticate, run a use case.

Everything after reading the body runs in a worker thread, reads included: a database round trip
(a network one on PostgreSQL, a lock wait on SQLite) must never stall the event loop.

Every call is audited the same way: a change (``change``) hands its service a trace context,
and the service adds the trace in the unit of work of the change; a refused call (401, 403 on any
route; any 4xx or 5xx of a change) is traced after the answer was decided, best-effort.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshup.audit.context import trace_context, with_caller
from meshup.audit.model import TraceContext
from meshup.errors import AuthenticationFailed, MeshupError
from meshup.http.envelopes import json_response
from meshup.http.requests import incoming, json_body, note_caller, request_id
from meshup.http.runtime import Runtime, runtime
from meshup.iam.actions import Action
from meshup.iam.service import Caller, IncomingRequest

T = TypeVar("T")
Work = Callable[[Caller, IncomingRequest], T]
Change = Callable[[Caller, IncomingRequest, TraceContext], T]

DOCUMENTED_BODIES: list[type[BaseModel]] = []
"""Request body models that routes reference; the OpenAPI document lists them as components."""

DENIALS = (401, 403)


async def call(request: Request, project_id: str, action: Action, work: Work[T]) -> T:
    """Authenticate; refuse at once when no policy could allow ``action`` in the project (so a
    caller without permission learns nothing about targets or bodies); then ``work``."""
    return await _run(request, project_id, action, lambda caller, data, _: work(caller, data), False)


async def change(request: Request, project_id: str, action: Action, work: Change[T]) -> T:
    """The same for a call that changes state: ``work`` gets the trace context of the call."""
    return await _run(request, project_id, action, work, True)


async def _run(request: Request, project_id: str, action: Action, work: Change[T], changes: bool) -> T:
    rt = runtime(request)
    data = await incoming(request)
    route = request.scope.get("route")
    context = trace_context(
        data,
        template=str(getattr(route, "path", request.url.path)),
        path_params=request.path_params,
        project_id=project_id,
        request_id=request_id(request),
        action=action,
        code=int(getattr(route, "status_code", None) or 200),
    )

    def run() -> T:
        nonlocal context
        with rt.db.read() as conn:
            caller = rt.identity.authenticate(conn, data, project_id)
        note_caller(request, caller)
        context = with_caller(context, caller, data)
        rt.identity.precheck(caller, action, project_id)
        return work(caller, data, context)

    try:
        return await run_in_threadpool(run)
    except (MeshupError, AuthenticationFailed) as exc:
        if exc.status in DENIALS or changes:
            why = exc.why if isinstance(exc, AuthenticationFailed) else exc.message
            await run_in_threadpool(rt.audit.refused, context, exc.status, why)
        raise
    except Exception:
        if changes:
            await run_in_threadpool(rt.audit.refused, context, 500, "internal error")
        raise


def record_denial(
    rt: Runtime,
    data: IncomingRequest,
    exc: MeshupError | AuthenticationFailed,
    *,
    template: str,
    path_params: Mapping[str, str],
    project_id: str,
    request_id: str,
    action: Action,
) -> None:
    """Trace a 401 or 403 answered outside :func:`call` (the mesh-job fast path); blocking."""
    context = trace_context(
        data,
        template=template,
        path_params=path_params,
        project_id=project_id,
        request_id=request_id,
        action=action,
        code=200,
    )
    if exc.status == 403:  # authenticated, so the trace can name the caller
        with suppress(MeshupError, AuthenticationFailed), rt.db.read() as conn:
            context = with_caller(context, rt.identity.authenticate(conn, data, project_id), data)
    rt.audit.refused(context, exc.status, exc.why if isinstance(exc, AuthenticationFailed) else exc.message)


def body_of(data: IncomingRequest) -> Any:
    return json_body(data)


def document(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(body, status)


def operation(action: Action, body: type[BaseModel] | None = None) -> dict[str, Any]:
    """A route's ``openapi_extra``: its IAM action, and the model of its JSON request body."""
    extra: dict[str, Any] = {"x-iam-action": action.name}
    if body is not None:
        if body not in DOCUMENTED_BODIES:
            DOCUMENTED_BODIES.append(body)
        schema = {"$ref": f"#/components/schemas/{body.__name__}"}
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return extra
