"""Errors the services raise; the HTTP layer maps each to its wire envelope (api contract §2).

Nothing here knows about a web framework: a service raises ``NotFound("mesh job x not found")``
and the envelope, status and code come from the class.
"""

from __future__ import annotations


def shown(value: str) -> str:
    """Caller-supplied text for an error message: at most 64 characters (then "…"), printable."""
    clipped = value[:64] + ("…" if len(value) > 64 else "")
    return clipped if clipped.isprintable() else repr(clipped)


class MeshupError(Exception):
    """A failure with a place in the service-layer error table."""

    status: int = 500
    code: str = "ASM.01040001"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(MeshupError):
    status = 400
    code = "ASM.01010001"


class ProjectNotAllowed(MeshupError):
    """The principal is authentic but not valid for the project in the path."""

    status = 401
    code = "ASM.01000001"


class Forbidden(MeshupError):
    status = 403
    code = "ASM.01000002"


class NotFound(MeshupError):
    status = 404
    code = "ASM.01010002"


class MethodNotAllowed(MeshupError):
    status = 405
    code = "ASM.01010001"


class Conflict(MeshupError):
    status = 409
    code = "ASM.01010003"


class Unavailable(MeshupError):
    status = 503
    code = "ASM.01040002"


class AuthenticationFailed(Exception):
    """Gateway-layer failure: 401 with the APIGW envelope. ``why`` never holds a secret."""

    def __init__(self, why: str, *, expired: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.code = "APIGW.0307" if expired else "APIGW.0301"
        self.status = 401
