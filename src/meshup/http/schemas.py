"""Error envelopes, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ServiceError(BaseModel):
    errorCode: str
    errorMsg: str


class Status(BaseModel):
    status: str


class GatewayError(BaseModel):
    error_code: str
    error_msg: str
    request_id: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an ASM endpoint can answer."""
    text = {
        400: "Invalid request (ASM.01010001).",
        401: "Authentication failed (gateway envelope, APIGW.0301/0307) or project not allowed (ASM.01000001).",
        403: "Denied by IAM (ASM.01000002).",
        404: "Not found, or not visible in this project (ASM.01010002).",
        409: "Conflict (ASM.01010003).",
        503: "Database unreachable; safe to retry (ASM.01040002).",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model: type[BaseModel] = ServiceError
        if status == 401:
            out[status] = {
                "description": text[status],
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/GatewayError"},
                                {"$ref": "#/components/schemas/ServiceError"},
                            ]
                        }
                    }
                },
            }
            continue
        out[status] = {"description": text[status], "model": model}
    return out
