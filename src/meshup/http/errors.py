"""From an exception to its response: the one mapping every route and the fast path share."""

from __future__ import annotations

import logging
import re

from starlette.responses import Response

from meshup.errors import AuthenticationFailed, MeshupError
from meshup.http.envelopes import gateway_error, keystone_error, service_error
from meshup.http.metrics import HttpMetrics, failure_reason

log = logging.getLogger("meshup")


_TRACES = re.compile(r"/v3/[^/]+/traces(/.*)?")


def is_identity_path(path: str) -> bool:
    """/v3 is Keystone's (its envelope, also for unknown paths there), except CTS's traces API."""
    return path.startswith("/v3") and _TRACES.fullmatch(path) is None


def error_response(exc: Exception, *, path: str, request_id: str, metrics: HttpMetrics) -> Response:
    identity = is_identity_path(path)
    if isinstance(exc, AuthenticationFailed):
        metrics.auth_failures.labels(failure_reason(exc.why)).inc()
        if identity:
            return keystone_error(401, exc.why)
        return gateway_error(exc.code, exc.why, request_id)
    if isinstance(exc, MeshupError):
        if identity:
            return keystone_error(exc.status, exc.message)
        return service_error(exc.status, exc.code, exc.message)
    log.error("unexpected error in request %s", request_id, exc_info=exc)
    if identity:
        return keystone_error(500, "internal error")
    return service_error(500, "ASM.01040001", "internal error")
