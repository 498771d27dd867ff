"""``/v2/meshes/{mesh_id}/namespaces`` and ``/v2/meshes/{mesh_id}/injection``: Huawei's namespace
APIs (docs/namespace-api.md). The path names no project: it comes from the credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from meshup.http.handlers import body_of, document, operation
from meshup.http.runtime import runtime
from meshup.http.schemas import error_responses
from meshup.iam import actions
from meshup.namespaces.schemas import (
    NamespaceListDocument,
    SidecarInjectionBody,
    SidecarInjectionDocument,
    parse_change,
    render_injection,
    render_namespaces,
)
from meshup.namespaces.scope import call_in_scope
from meshup.namespaces.service import NamespaceService

router = APIRouter(tags=["namespaces"])


def _service(request: Request) -> NamespaceService:
    return runtime(request).namespaces


@router.get(
    "/v2/meshes/{mesh_id}/namespaces",
    summary="ListNamespaces: the namespaces of a mesh's clusters",
    responses={
        200: {"model": NamespaceListDocument, "description": "The namespaces, sorted by name."},
        **error_responses(400, 401, 403, 404, 503),
    },
    openapi_extra=operation(actions.LIST_NAMESPACES),
)
async def list_namespaces(mesh_id: str, request: Request) -> Response:
    service = _service(request)
    found = await call_in_scope(
        request,
        actions.LIST_NAMESPACES,
        lambda caller, project_id, data: service.list_namespaces(caller, project_id, mesh_id, data.source_ip),
    )
    return document(render_namespaces(found))


@router.get(
    "/v2/meshes/{mesh_id}/injection",
    summary="GetSidecarInjection: which namespaces of a cluster inject the mesh's sidecars",
    responses={
        200: {"model": SidecarInjectionDocument, "description": "The injection of the cluster."},
        **error_responses(400, 401, 403, 404, 503),
    },
    openapi_extra=operation(actions.GET_NAMESPACE),
)
async def get_injection(
    mesh_id: str,
    request: Request,
    clusterId: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Response:
    service = _service(request)
    found = await call_in_scope(
        request,
        actions.GET_NAMESPACE,
        lambda caller, project_id, data: service.get_injection(
            caller, project_id, mesh_id, clusterId, data.source_ip
        ),
    )
    return document(render_injection(found))


@router.put(
    "/v2/meshes/{mesh_id}/injection",
    summary="UpdateSidecarInjection: set the injected namespaces (others stop injecting)",
    responses={
        200: {"model": SidecarInjectionDocument, "description": "The injection after the change."},
        **error_responses(400, 401, 403, 404, 409, 503),
    },
    openapi_extra=operation(actions.UPDATE_NAMESPACE, SidecarInjectionBody),
)
async def update_injection(mesh_id: str, request: Request) -> Response:
    service = _service(request)
    found = await call_in_scope(
        request,
        actions.UPDATE_NAMESPACE,
        lambda caller, project_id, data: service.update_injection(
            caller, project_id, mesh_id, parse_change(body_of(data)), data.source_ip
        ),
    )
    return document(render_injection(found))
