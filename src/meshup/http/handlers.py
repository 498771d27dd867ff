"""The shape every authenticated ASM route shares: read the request, authenticate, run a use case.

Reads run inline on the event loop (short indexed queries; a thread hop costs more). Writes run in
a worker thread, because a SQLite writer may wait for the lock and must not stall other requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshup.errors import Conflict
from meshup.http.envelopes import json_response
from meshup.http.requests import incoming, json_body, note_caller
from meshup.http.runtime import runtime
from meshup.iam.service import Caller, IncomingRequest

T = TypeVar("T")
Work = Callable[[Connection, Caller, IncomingRequest], T]


async def read_call(request: Request, project_id: str, work: Work[T]) -> T:
    rt = runtime(request)
    data = await incoming(request)
    with rt.db.read() as conn:
        caller = rt.identity.authenticate(conn, data, project_id)
        note_caller(request, caller)
        return work(conn, caller, data)


async def write_call(request: Request, project_id: str, work: Work[T], *, body: bool = False) -> T:
    rt = runtime(request)
    data = await incoming(request)

    def run() -> T:
        with rt.db.read() as conn:
            caller = rt.identity.authenticate(conn, data, project_id)
        note_caller(request, caller)
        try:
            with rt.db.write() as conn:
                return work(conn, caller, data)
        except IntegrityError as exc:
            # Two requests raced for the same name or mesh; the loser gets what a serial caller would.
            raise Conflict("the resource was changed by a concurrent request; retry") from exc

    return await run_in_threadpool(run)


def body_of(data: IncomingRequest) -> Any:
    return json_body(data)


def document(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(body, status)
