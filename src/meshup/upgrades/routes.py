"""``/v1/{project_id}/mesh-upgrade``: canary upgrade tasks (asm-api.md §5). Parse, one service
call, render."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.http.handlers import body_of, call, change, document, operation
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.iam.actions import UPGRADE
from meshup.upgrades.schemas import (
    MeshUpgradeCreateBody,
    MeshUpgradeDocument,
    MeshUpgradeList,
    MeshUpgradeUpdateBody,
    parse_change,
    parse_create,
    parse_list_query,
    render_list,
    render_task,
)

router = APIRouter(tags=["mesh upgrade tasks"])


def _ok(status: int, text: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": MeshUpgradeDocument, "description": text}}


@router.post(
    "/v1/{project_id}/mesh-upgrade",
    status_code=201,
    summary="Create a canary upgrade task (starts its PreCheck)",
    responses={
        **_ok(201, "Task created; status.jobId is the PreCheck job."),
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=operation(UPGRADE, MeshUpgradeCreateBody),
)
async def create_task(project_id: str, request: Request) -> Response:
    upgrades = runtime(request).upgrades
    task = await change(
        request,
        project_id,
        UPGRADE,
        lambda caller, data, trace: upgrades.create(
            caller, project_id, parse_create(body_of(data)), data.source_ip, trace
        ),
    )
    return document(render_task(task), 201)


@router.get(
    "/v1/{project_id}/mesh-upgrade",
    summary="List canary upgrade tasks, newest first (meshup extension; ?meshId= &limit= &marker=)",
    responses={
        200: {
            "model": MeshUpgradeList,
            "description": "Tasks of meshes a policy allows asm:mesh:upgrade on.",
        },
        **error_responses(400, 401, 403, 404, 503),
    },
    openapi_extra=operation(UPGRADE),
)
async def list_tasks(project_id: str, request: Request) -> Response:
    upgrades = runtime(request).upgrades
    query = dict(request.query_params)
    page = await call(
        request,
        project_id,
        UPGRADE,
        lambda caller, data: upgrades.list_tasks(caller, project_id, parse_list_query(query), data.source_ip),
    )
    return document(render_list(page))


@router.get(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Show a canary upgrade task",
    responses={**_ok(200, "The task."), **error_responses(401, 403, 404, 503)},
    openapi_extra=operation(UPGRADE),
)
async def show_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    upgrades = runtime(request).upgrades
    task = await call(
        request,
        project_id,
        UPGRADE,
        lambda caller, data: upgrades.get(caller, project_id, mesh_upgrade_id, data.source_ip),
    )
    return document(render_task(task))


@router.put(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Start the next step (spec.currentStep) of a canary upgrade task",
    responses={
        **_ok(200, "The task; status.jobId is the new step's job."),
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=operation(UPGRADE, MeshUpgradeUpdateBody),
)
async def update_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    upgrades = runtime(request).upgrades
    task = await change(
        request,
        project_id,
        UPGRADE,
        lambda caller, data, trace: upgrades.update(
            caller, project_id, mesh_upgrade_id, parse_change(body_of(data)), data.source_ip, trace
        ),
    )
    return document(render_task(task))


@router.delete(
    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
    summary="Delete a finished canary upgrade task (its jobs stay queryable)",
    responses={**_ok(200, "The task as it was."), **error_responses(401, 403, 404, 409, 503)},
    openapi_extra=operation(UPGRADE),
)
async def delete_task(project_id: str, mesh_upgrade_id: str, request: Request) -> Response:
    upgrades = runtime(request).upgrades
    task = await change(
        request,
        project_id,
        UPGRADE,
        lambda caller, data, trace: upgrades.delete(
            caller, project_id, mesh_upgrade_id, data.source_ip, trace
        ),
    )
    return document(render_task(task))
