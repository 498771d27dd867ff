"""HTTP routes of the control API under ``/meshup-api/``: thin, every one behind the control token.

Not in ``/openapi.json``, which describes Huawei's API only (``docs/control-api.md`` documents
these). Handlers are plain functions: FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meshup.control.access import HEADER, check_token
from meshup.control.schemas import AdvanceIn, ClockIn, FaultIn, ResetIn
from meshup.control.service import ControlService, RunReport, SeedRejected, instant
from meshup.http.envelopes import json_response


def service(request: Request) -> ControlService:
    control: ControlService = request.app.state.control
    return control


class Guarded(APIRoute):
    """Checks the control token before anything else, body parsing included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            check_token(request.app.state.control_token, request.headers.get(HEADER))
            return await handler(request)

        return guarded


router = APIRouter(prefix="/meshup-api", include_in_schema=False, route_class=Guarded)
Control = Annotated[ControlService, Depends(service)]


def install(app: FastAPI, control: ControlService, token: str) -> None:
    app.state.control = control
    app.state.control_token = token
    app.include_router(router)


def _run(report: RunReport) -> dict[str, Any]:
    return {"leaves": report.leaves, "now": instant(report.now)}


@router.post("/reset")
def reset(control: Control, body: Annotated[ResetIn | None, Body()] = None) -> dict[str, Any]:
    to = (body or ResetIn()).to
    return {"to": to, "ms": control.reset(to)}


@router.get("/snapshots")
def list_snapshots(control: Control) -> dict[str, Any]:
    return {"snapshots": [{"name": s.name, "createdAt": instant(s.created_at)} for s in control.saved()]}


@router.put("/snapshots/{name}", status_code=201)
def save_snapshot(control: Control, name: str) -> dict[str, Any]:
    snapshot = control.save(name)
    return {"name": snapshot.name, "createdAt": instant(snapshot.created_at)}


@router.post("/snapshots/{name}/restore")
def restore_snapshot(control: Control, name: str) -> dict[str, Any]:
    control.restore(name)
    return {"name": name}


@router.delete("/snapshots/{name}", status_code=204)
def delete_snapshot(control: Control, name: str) -> Response:
    control.delete(name)
    return Response(status_code=204)


@router.post("/seed")
async def seed(request: Request, control: Control) -> Response:
    body = await request.body()
    try:
        report = await run_in_threadpool(control.seed, body, request.headers.get("content-type", ""))
    except SeedRejected as exc:
        # The service envelope, plus every error with its path (as ``meshup seed apply`` prints them).
        return json_response({"errorCode": exc.code, "errorMsg": exc.message, "errors": exc.errors}, 400)
    return json_response(report, 200)


@router.get("/clock")
def get_clock(control: Control) -> dict[str, Any]:
    return control.clock_state()


@router.put("/clock")
def put_clock(control: Control, body: ClockIn) -> dict[str, Any]:
    return control.configure_clock(body)


@router.post("/clock/advance")
def advance(control: Control, body: AdvanceIn) -> dict[str, Any]:
    return _run(control.advance(body.seconds))


@router.post("/clock/run-until-idle")
def run_until_idle(control: Control) -> dict[str, Any]:
    return _run(control.run_until_idle())


@router.get("/faults")
def list_faults(
    control: Control, cluster: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    return {"faults": control.faults(cluster)}


@router.post("/faults", status_code=201)
def add_fault(control: Control, body: FaultIn) -> dict[str, Any]:
    return control.add_fault(body)


@router.delete("/faults/{fault_id}", status_code=204)
def delete_fault(control: Control, fault_id: str) -> Response:
    control.delete_fault(fault_id)
    return Response(status_code=204)
