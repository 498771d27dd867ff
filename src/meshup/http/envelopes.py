"""The three error envelopes (asm-api.md §2, auth.md §2): one place builds each."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from starlette.responses import Response

JSON = "application/json"


def service_error(status: int, code: str, message: str) -> Response:
    """Service layer: ``{"errorCode", "errorMsg"}``."""
    return Response(
        orjson.dumps({"errorCode": code, "errorMsg": message}), status_code=status, media_type=JSON
    )


def gateway_error(code: str, why: str, request_id: str) -> Response:
    """Gateway layer (authentication): ``{"error_code", "error_msg", "request_id"}``, always 401."""
    body = {
        "error_code": code,
        "error_msg": f"Incorrect IAM authentication information: {why}",
        "request_id": request_id,
    }
    return Response(orjson.dumps(body), status_code=401, media_type=JSON)


def keystone_error(status: int, message: str) -> Response:
    """Identity endpoints (/v3): Keystone's ``{"error": {"code", "title", "message"}}``."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"error": {"code": status, "title": title, "message": message}}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)
