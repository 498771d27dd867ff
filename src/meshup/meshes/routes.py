"""``/v1/{project_id}/meshes``: the mesh API (asm-api.md §6). Parse, one service call, render."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.http.handlers import body_of, call, change, document, operation
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.iam import actions
from meshup.meshes.schemas import (
    MeshCreateBody,
    MeshDocument,
    MeshList,
    MeshUpdateBody,
    parse_create,
    parse_update,
    render_list,
    render_mesh,
)

router = APIRouter(tags=["meshes"])


@router.post(
    "/v1/{project_id}/meshes",
    status_code=201,
    summary="Create a mesh (phase Creating, then Running once its control plane is installed)",
    responses={
        201: {"model": MeshDocument, "description": "The mesh, phase Creating."},
        **error_responses(400, 401, 403, 409, 503),
    },
    openapi_extra=operation(actions.CREATE, MeshCreateBody),
)
async def create_mesh(project_id: str, request: Request) -> Response:
    meshes = runtime(request).meshes
    mesh = await change(
        request,
        project_id,
        actions.CREATE,
        lambda caller, data, trace: meshes.create(
            caller, project_id, parse_create(body_of(data)), data.source_ip, trace
        ),
    )
    return document(render_mesh(mesh), 201)


@router.get(
    "/v1/{project_id}/meshes",
    summary="List the meshes the caller may see",
    responses={
        200: {"model": MeshList, "description": "Meshes a policy allows asm:mesh:list on."},
        **error_responses(401, 403, 503),
    },
    openapi_extra=operation(actions.LIST),
)
async def list_meshes(project_id: str, request: Request) -> Response:
    meshes = runtime(request).meshes
    found = await call(
        request,
        project_id,
        actions.LIST,
        lambda caller, data: meshes.list_meshes(caller, project_id, data.source_ip),
    )
    return document(render_list(found))


@router.get(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary="Show a mesh",
    responses={
        200: {"model": MeshDocument, "description": "The mesh."},
        **error_responses(401, 403, 404, 503),
    },
    openapi_extra=operation(actions.GET),
)
async def show_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    meshes = runtime(request).meshes
    mesh = await call(
        request,
        project_id,
        actions.GET,
        lambda caller, data: meshes.show(caller, project_id, mesh_id, data.source_ip),
    )
    return document(render_mesh(mesh))


@router.put(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary='Update a mesh\'s configuration (body: {"config": MeshConfig})',
    responses={
        200: {"model": MeshDocument, "description": "The mesh."},
        **error_responses(400, 401, 403, 404, 503),
    },
    openapi_extra=operation(actions.UPDATE, MeshUpdateBody),
)
async def update_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    meshes = runtime(request).meshes
    mesh = await change(
        request,
        project_id,
        actions.UPDATE,
        lambda caller, data, trace: meshes.update_config(
            caller, project_id, mesh_id, parse_update(body_of(data)), data.source_ip, trace
        ),
    )
    return document(render_mesh(mesh))


@router.delete(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary="Delete a mesh (phase Deleting, then gone)",
    responses={
        200: {"model": MeshDocument, "description": "The mesh, phase Deleting."},
        **error_responses(401, 403, 404, 409, 503),
    },
    openapi_extra=operation(actions.DELETE),
)
async def delete_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    meshes = runtime(request).meshes
    mesh = await change(
        request,
        project_id,
        actions.DELETE,
        lambda caller, data, trace: meshes.delete(caller, project_id, mesh_id, data.source_ip, trace),
    )
    return document(render_mesh(mesh))
