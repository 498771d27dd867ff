"""Operational endpoints (no authentication) and the OpenAPI document's security schemes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meshup.http.envelopes import json_response
from meshup.http.handlers import DOCUMENTED_BODIES
from meshup.http.metrics import CONTENT_TYPE
from meshup.http.runtime import runtime
from meshup.http.schemas import GatewayError, ServiceError, Status
from meshup.iam.schemas import TOKEN_REQUEST_SCHEMAS

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz", summary="Liveness", responses={200: {"model": Status, "description": '{"status": "ok"}'}}
)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: the database answers",
    responses={
        200: {"model": Status, "description": '{"status": "ready"}'},
        503: {"model": Status, "description": '{"status": "database unreachable"}'},
    },
)
async def readyz(request: Request) -> Response:
    if await run_in_threadpool(runtime(request).db.ping):  # a slow database must not stall the loop
        return json_response({"status": "ready"})
    return json_response({"status": "database unreachable"}, 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    # Engine metrics query the database: render in a thread, off the event loop.
    return Response(await run_in_threadpool(runtime(request).metrics.render), media_type=CONTENT_TYPE)


def install_openapi(app: FastAPI) -> None:
    """Add the authentication schemes and error envelopes to the generated document."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["GatewayError"] = GatewayError.model_json_schema()
        schemas.update(TOKEN_REQUEST_SCHEMAS)
        bodies: list[type[BaseModel]] = list(DOCUMENTED_BODIES)
        for model in bodies:
            for name, definition in (
                model.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
            ):
                schemas.setdefault(name, definition)
            schemas[model.__name__] = {
                k: v
                for k, v in model.model_json_schema(ref_template="#/components/schemas/{model}").items()
                if k != "$defs"
            }
        schemas["ServiceError"] = ServiceError.model_json_schema()
        components["securitySchemes"] = {
            "iamToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
            "akskSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "SDK-HMAC-SHA256 / SDK-HMAC-SM3 / V11-HMAC-SHA256 request signature with X-Sdk-Date.",
            },
        }
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                # FastAPI documents a 422 of its own; this server answers invalid input with 400
                # in the API's envelope (app.py), which routes declare with error_responses(400).
                operation.get("responses", {}).pop("422", None)
            if path.startswith(("/v1/", "/v2/")) or path == "/v3/projects":
                for operation in operations.values():
                    operation["security"] = [{"iamToken": []}, {"akskSignature": []}]
        # Validating a token takes the caller's own token (X-Auth-Token) besides the subject.
        document["paths"]["/v3/auth/tokens"]["get"]["security"] = [{"iamToken": []}]
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
