"""``/v1/{project_id}/mesh-upgrade``: canary upgrade tasks (asm-api.md §5)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.http.handlers import body_of, document, read_call, write_call
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.upgrades.schemas import MeshUpgradeModel

router = APIRouter(tags=["mesh upgrade tasks"])
_EXTRA = {"x-iam-action": "asm:mesh:upgrade"}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MeshUpgradeModel"}}},
    }
}


def _ok(status: int, text: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": MeshUpgradeModel, "description": text}}


@router.post(
    "/v1/{project_id}/mesh-upgrade",
    status_code=201,
    summary="Create a canary upgrade task (starts its PreCheck)",
    responses={
        **_ok(201, "Task created; status.jobId is the PreCheck job."),
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra={**_EXTRA, **_BODY},
)
async def create_task(project_id: str, request: Request) -> Response:
    rt = runtime(request)
    created = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.upgrades.create(
            conn, caller, project_id, body_of(data), data.source_ip, rt.clock.now()
        ),
    )
    return document(created, 201)


@router.get(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Show a canary upgrade task",
    responses={**_ok(200, "The task."), **error_responses(401, 403, 404, 503)},
    openapi_extra=_EXTRA,
)
async def show_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    rt = runtime(request)
    task = await read_call(
        request,
        project_id,
        lambda conn, caller, data: rt.upgrades.get(conn, caller, project_id, mesh_upgrade_id, data.source_ip),
    )
    return document(task)


@router.put(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Start the next step (spec.currentStep) of a canary upgrade task",
    responses={
        **_ok(200, "The task; status.jobId is the new step's job."),
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra={**_EXTRA, **_BODY},
)
async def update_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    rt = runtime(request)
    task = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.upgrades.update(
            conn, caller, project_id, mesh_upgrade_id, body_of(data), data.source_ip, rt.clock.now()
        ),
    )
    return document(task)


@router.delete(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Delete a finished canary upgrade task (its jobs stay queryable)",
    responses={**_ok(200, "The task as it was."), **error_responses(401, 403, 404, 409, 503)},
    openapi_extra=_EXTRA,
)
async def delete_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    rt = runtime(request)
    task = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.upgrades.delete(
            conn, caller, project_id, mesh_upgrade_id, data.source_ip
        ),
    )
    return document(task)
