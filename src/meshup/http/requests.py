"""From an HTTP request to what the services need, without framework types leaking further."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Scope

from meshup.errors import InvalidRequest
from meshup.iam.service import Caller, IncomingRequest

MAX_BODY_BYTES = 1024 * 1024


async def incoming(request: Request, *, max_body: int = MAX_BODY_BYTES) -> IncomingRequest:
    scope = request.scope
    headers = _first_headers(scope)
    body = b""
    if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise InvalidRequest(f"request body too large (limit {max_body} bytes)")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise InvalidRequest(f"request body too large (limit {max_body} bytes)")
            chunks.append(chunk)
        body = b"".join(chunks)
    return _incoming(scope, headers, body)


def incoming_without_body(scope: Scope) -> IncomingRequest:
    """The request of an ASGI scope whose body is not read (a GET)."""
    return _incoming(scope, _first_headers(scope), b"")


def _incoming(scope: Scope, headers: dict[str, bytes], body: bytes) -> IncomingRequest:
    client = scope.get("client")
    return IncomingRequest(
        method=scope["method"],
        raw_path=scope.get("raw_path") or scope["path"].encode(),
        query_string=scope.get("query_string", b""),
        headers=headers,
        body=body,
        source_ip=client[0] if client else "",
    )


def _first_headers(scope: Scope) -> dict[str, bytes]:
    # The first occurrence counts, as a signer would see it: built from the last header to the
    # first, each earlier one replaces a later one of the same name.
    raw = scope["headers"]
    if not isinstance(raw, list | tuple):  # ASGI allows any iterable
        raw = list(raw)
    return {name.decode("latin-1"): value for name, value in reversed(raw)}


def _scope(of: Request | Scope) -> Scope:
    return of.scope if isinstance(of, Request) else of


def note_caller(of: Request | Scope, caller: Caller) -> None:
    """Name the principal in the access log line of this request."""
    _scope(of).setdefault("state", {})["principal"] = caller.principal.label


def source_ip(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else ""


def request_id(of: Request | Scope) -> str:
    return str(_scope(of).get("state", {}).get("request_id", ""))


def json_body(incoming_request: IncomingRequest) -> Any:
    """Parse a JSON request body; the content type must say JSON (asm-api.md §1)."""
    content_type = incoming_request.headers.get("content-type", b"").decode("latin-1").lower()
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    if media_type != "application/json":
        raise InvalidRequest("Content-Type must be application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise InvalidRequest("Content-Type: the body must be UTF-8 (charset=utf-8)")
    if not incoming_request.body:
        raise InvalidRequest("request body: required")
    try:
        return orjson.loads(incoming_request.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body: malformed JSON ({exc.msg} at position {exc.pos})") from exc
