"""One ASGI middleware around everything: request ids, path normalisation, metrics, access log.

It is plain ASGI (not BaseHTTPMiddleware) because it wraps every request on the hot path.
"""

from __future__ import annotations

import random
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshup.http.access_log import error_logger, log_access
from meshup.http.envelopes import keystone_body, service_body
from meshup.http.errors import is_identity_path
from meshup.http.metrics import HttpMetrics

_INTERNAL = service_body("ASM.01040001", "internal error")
# The identity endpoints answer every error in Keystone's shape (auth.md §2), even this one.
_INTERNAL_KEYSTONE = keystone_body(500, "internal error")


def new_request_id() -> str:
    # Unique, not secret: the module generator (reseeded in forked children) needs no system call.
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics, *, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # The signature cannot tell "/x" from "/x/", so neither does routing (no redirects).
            scope["path"] = path.rstrip("/") or "/"
        status = 500
        response_started = False
        request_id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error in request %s", request_id)
            if not response_started:
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                body = _INTERNAL_KEYSTONE if is_identity_path(path) else _INTERNAL
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, elapsed)
            if self.access_log:
                log_access(
                    request_id, state.get("principal", "-"), scope["method"], template, status, elapsed
                )
