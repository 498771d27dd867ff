"""The three error envelopes (asm-api.md §2, auth.md §2): one place builds each.

Every message is capped here, whatever raised it: a message that quotes client input must never
grow with that input (a 500 KB field name must not come back as a 500 KB error).
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from starlette.responses import Response

JSON = "application/json"
MAX_MESSAGE_CHARS = 512
ECHO_CHARS = 64
_ELLIPSIS = "…"


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return message if len(message) <= limit else message[:limit] + _ELLIPSIS


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """A piece of client input quoted in a message: a short, printable prefix (escapes count)."""
    text = value if isinstance(value, str) else repr(value)
    head = text[:limit]
    if not head.isprintable():
        head = head.encode("unicode_escape").decode("ascii")
    return bounded(head, limit) if len(head) > limit else head + (_ELLIPSIS if len(text) > limit else "")


def service_body(code: str, message: str) -> bytes:
    return orjson.dumps({"errorCode": code, "errorMsg": bounded(message)})


def service_error(status: int, code: str, message: str) -> Response:
    """Service layer: ``{"errorCode", "errorMsg"}``."""
    return Response(service_body(code, message), status_code=status, media_type=JSON)


def gateway_body(code: str, message: str, request_id: str) -> bytes:
    """Gateway layer: ``{"error_code", "error_msg", "request_id"}``."""
    return orjson.dumps({"error_code": code, "error_msg": bounded(message), "request_id": request_id})


def gateway_error(code: str, why: str, request_id: str) -> Response:
    """Gateway layer (authentication): always 401."""
    body = gateway_body(code, f"Incorrect IAM authentication information: {why}", request_id)
    return Response(body, status_code=401, media_type=JSON)


def keystone_body(status: int, message: str) -> bytes:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return orjson.dumps({"error": {"code": status, "title": title, "message": bounded(message)}})


def keystone_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Identity endpoints (/v3): Keystone's ``{"error": {"code", "title", "message"}}``."""
    return Response(keystone_body(status, message), status_code=status, media_type=JSON, headers=headers)


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)
