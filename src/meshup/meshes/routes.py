"""``/v1/{project_id}/meshes``: the mesh API (asm-api.md §6)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from meshup.http.handlers import body_of, document, read_call, write_call
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.meshes.schemas import MeshListModel, MeshModel

router = APIRouter(tags=["meshes"])
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MeshModel"}}},
    }
}


@router.post(
    "/v1/{project_id}/meshes",
    status_code=201,
    summary="Create a mesh (phase Creating, then Running once its control plane is installed)",
    responses={
        201: {"model": MeshModel, "description": "The mesh, phase Creating."},
        **error_responses(400, 401, 403, 409, 503),
    },
    openapi_extra={"x-iam-action": "asm:mesh:create", **_BODY},
)
async def create_mesh(project_id: str, request: Request) -> Response:
    rt = runtime(request)
    mesh = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.meshes.create(
            conn, caller, project_id, body_of(data), data.source_ip, rt.clock.now()
        ),
    )
    return document(mesh, 201)


@router.get(
    "/v1/{project_id}/meshes",
    summary="List the meshes the caller may see",
    responses={
        200: {"model": MeshListModel, "description": "Meshes a policy allows asm:mesh:list on."},
        **error_responses(401, 403, 503),
    },
    openapi_extra={"x-iam-action": "asm:mesh:list"},
)
async def list_meshes(project_id: str, request: Request) -> Response:
    rt = runtime(request)
    meshes = await read_call(
        request,
        project_id,
        lambda conn, caller, data: rt.meshes.list_meshes(conn, caller, project_id, data.source_ip),
    )
    return document(meshes)


@router.get(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary="Show a mesh",
    responses={200: {"model": MeshModel, "description": "The mesh."}, **error_responses(401, 403, 404, 503)},
    openapi_extra={"x-iam-action": "asm:mesh:get"},
)
async def show_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    rt = runtime(request)
    mesh = await read_call(
        request,
        project_id,
        lambda conn, caller, data: rt.meshes.show(conn, caller, project_id, mesh_id, data.source_ip),
    )
    return document(mesh)


@router.put(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary='Update a mesh\'s configuration (body: {"config": MeshConfig})',
    responses={
        200: {"model": MeshModel, "description": "The mesh."},
        **error_responses(400, 401, 403, 404, 503),
    },
    openapi_extra={
        "x-iam-action": "asm:mesh:update",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MeshConfigUpdate"}}},
        },
    },
)
async def update_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    rt = runtime(request)
    mesh = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.meshes.update(
            conn, caller, project_id, mesh_id, body_of(data), data.source_ip, rt.clock.now()
        ),
    )
    return document(mesh)


@router.delete(
    "/v1/{project_id}/meshes/{mesh_id}",
    summary="Delete a mesh (phase Deleting, then gone)",
    responses={
        200: {"model": MeshModel, "description": "The mesh, phase Deleting."},
        **error_responses(401, 403, 404, 409, 503),
    },
    openapi_extra={"x-iam-action": "asm:mesh:delete"},
)
async def delete_mesh(project_id: str, mesh_id: str, request: Request) -> Response:
    rt = runtime(request)
    mesh = await write_call(
        request,
        project_id,
        lambda conn, caller, data: rt.meshes.delete(
            conn, caller, project_id, mesh_id, data.source_ip, rt.clock.now()
        ),
    )
    return document(mesh)
