"""The project of a request whose path names none (Huawei's ``/v2/meshes/...`` APIs).

A project-scoped token names its project; an AK/SK request names it in ``X-Project-Id`` (the
official SDK sends it when given a project id), or the account's only project is meant. The request
is then authenticated for that project exactly as a ``/v1/{project_id}/...`` request would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from meshup.errors import InvalidRequest, ProjectNotAllowed
from meshup.http.requests import incoming, note_caller
from meshup.http.runtime import runtime
from meshup.iam.actions import Action
from meshup.iam.service import Caller, IncomingRequest

T = TypeVar("T")
ScopedWork = Callable[[Caller, str, IncomingRequest], T]


def project_of(caller: Caller, request: IncomingRequest) -> str:
    if caller.token is not None:
        if caller.token.project_id is None:
            raise ProjectNotAllowed("this API needs a token scoped to a project (the path names none)")
        return caller.token.project_id
    header = request.headers.get("x-project-id")
    if header is not None and header.strip():
        return header.decode("latin-1").strip()
    projects = list(caller.principal.projects)
    if len(projects) == 1:
        return projects[0]
    raise InvalidRequest("X-Project-Id: required (the path names no project and the account has several)")


async def call_in_scope(request: Request, action: Action, work: ScopedWork[T]) -> T:
    """Like :func:`meshup.http.handlers.call`, with the project taken from the credentials;
    ``work`` gets the caller, the project id and the request."""
    rt = runtime(request)
    data = await incoming(request)

    def run() -> T:
        with rt.db.read() as conn:
            project_id = project_of(rt.identity.authenticate(conn, data, None), data)
            caller = rt.identity.authenticate(conn, data, project_id)
        note_caller(request, caller)
        rt.identity.precheck(caller, action, project_id)
        return work(caller, project_id, data)

    return await run_in_threadpool(run)
