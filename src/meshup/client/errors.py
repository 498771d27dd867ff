"""What can go wrong in a client command, each printed as one line on stderr."""

from __future__ import annotations


class ClientError(Exception):
    """A failure the user can act on; ``str()`` is the whole message."""


class CredentialsError(ClientError):
    """No usable endpoint or credentials from flags, environment or credentials file."""


class ConnectionFailed(ClientError):
    """The endpoint could not be reached, or stopped answering."""


class RequestTimedOut(ConnectionFailed):
    """The endpoint did not answer within the request's timeout."""


class ApiError(ClientError):
    """An error answer of the server, in whichever envelope it came."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        return f"{text} (request id {self.request_id})" if self.request_id else text


class WaitTimedOut(ClientError):
    """A job did not reach a terminal phase before the deadline."""
