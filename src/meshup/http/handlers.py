"""The shape every authenticated ASM route shares: read the request, authenticate, run a use case.

Everything after reading the body runs in a worker thread, reads included: a database round trip
(a network one on PostgreSQL, a lock wait on SQLite) must never stall the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshup.http.envelopes import json_response
from meshup.http.requests import incoming, json_body, note_caller
from meshup.http.runtime import runtime
from meshup.iam.actions import Action
from meshup.iam.service import Caller, IncomingRequest

T = TypeVar("T")
Work = Callable[[Caller, IncomingRequest], T]

DOCUMENTED_BODIES: list[type[BaseModel]] = []
"""Request body models that routes reference; the OpenAPI document lists them as components."""


async def call(request: Request, project_id: str, action: Action, work: Work[T]) -> T:
    """Authenticate; refuse at once when no policy could allow ``action`` in the project (so a
    caller without permission learns nothing about targets or bodies); then ``work``."""
    rt = runtime(request)
    data = await incoming(request)

    def run() -> T:
        with rt.db.read() as conn:
            caller = rt.identity.authenticate(conn, data, project_id)
        note_caller(request, caller)
        rt.identity.precheck(caller, action, project_id)
        return work(caller, data)

    return await run_in_threadpool(run)


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
