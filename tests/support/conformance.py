"""Every response checked against the OpenAPI document the server itself serves.

``ResponseChecker`` instruments the HTTP clients the end-to-end tests use (httpx for raw calls;
requests underneath the official SDK and keystoneauth1): each response from a meshup server is
matched to its documented operation by method, path template and status, and its body validated
against that status's schema with jsonschema. Problems are collected, not raised, so that a
client library that swallows exceptions cannot hide one; the test fails at teardown.

Rules, from the server's own contract: an unknown path is a documented-shape 404; a known path
with an undocumented method is 405 with an ``Allow`` header naming exactly the documented methods
(HEAD with GET); refusals of a request head (400/408/414/431) come from the gateway layer, in its
envelope, for any path.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import requests

from meshup.http.errors import is_identity_path

GATEWAY_REFUSALS = {400, 408, 414, 431}
_PARAM = re.compile(r"\{[^/{}]+\}")


@dataclass
class Operation:
    method: str
    template: str
    responses: dict[str, Any]


@dataclass
class Document:
    raw: dict[str, Any]
    routes: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    validators: dict[str, jsonschema.Draft202012Validator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for template in self.raw["paths"]:
            pattern = _PARAM.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
            self.routes.append((re.compile(pattern), template))

    def template_of(self, path: str) -> str | None:
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        for pattern, template in self.routes:
            if pattern.fullmatch(path):
                return template
        return None

    def validate(self, schema: dict[str, Any], instance: Any) -> list[str]:
        key = json.dumps(schema, sort_keys=True)
        validator = self.validators.get(key)
        if validator is None:  # built once per schema: the suite's own CPU time matters to its timings
            root = {"allOf": [schema], "components": self.raw.get("components", {})}
            validator = self.validators.setdefault(key, jsonschema.Draft202012Validator(root))
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message[:300]}"
            for error in validator.iter_errors(instance)
        ]

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}


_DOCUMENTS: dict[str, Document] = {}  # by origin; every meshup server serves the same document
EVENT_STREAM = "text/event-stream"
_DOCUMENTS_LOCK = threading.Lock()


def served_document(origin: str) -> Document:
    with _DOCUMENTS_LOCK:
        if origin not in _DOCUMENTS:
            # urllib, not the instrumented clients: fetching the document is not a checked call.
            with urllib.request.urlopen(f"{origin}/openapi.json", timeout=30) as response:
                _DOCUMENTS[origin] = Document(json.loads(response.read()))
        return _DOCUMENTS[origin]


class ResponseChecker:
    """Collects the problems of every response seen while ``instrumented()`` is active."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def check(self, method: str, url: str, status: int, headers: dict[str, str], body: bytes) -> None:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.path == "/openapi.json":
            return
        if parts.path.startswith(("/console/", "/meshup-api/")) or parts.path == "/console":
            # The browser console (HTML pages) and the control API for test suites are meshup's
            # own extensions, documented in docs/, not in Huawei's API document.
            return
        try:
            document = served_document(f"{parts.scheme}://{parts.netloc}")
        except OSError:
            return  # the server is gone (crash tests kill it): nothing to compare with
        path = parts.path or "/"
        found = self._problems(document, method.upper(), path, status, headers, body)
        if found:
            with self._lock:
                self.problems.append(f"{method} {path} -> {status}: " + "; ".join(found))

    def _problems(
        self, doc: Document, method: str, path: str, status: int, headers: dict[str, str], body: bytes
    ) -> list[str]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        parsed: Any = None
        if body and content_type == "application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                return ["the body is not JSON although its Content-Type says so"]
        if status in GATEWAY_REFUSALS and isinstance(parsed, dict) and "error_code" in parsed:
            return doc.validate(doc.ref("GatewayError"), parsed)
        identity = is_identity_path(path)
        error_schema = doc.ref("KeystoneError") if identity else doc.ref("ServiceError")
        template = doc.template_of(path)
        if template is None:
            if status != 404:
                return [f"no documented path matches, yet the status is {status} (expected 404)"]
            return doc.validate(error_schema, parsed)
        operations = {m.upper(): op for m, op in doc.raw["paths"][template].items()}
        operation = operations.get("GET" if method == "HEAD" else method)
        if operation is None:
            problems = [] if status == 405 else [f"method not documented, yet the status is {status}"]
            allowed = {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}
            expected = set(operations) | ({"HEAD"} if "GET" in operations else set())
            if allowed != expected:
                problems.append(f"Allow is {sorted(allowed)}, the document says {sorted(expected)}")
            return problems + doc.validate(error_schema, parsed)
        response = operation["responses"].get(str(status)) or operation["responses"].get("default")
        if response is None:
            return [f"status {status} is not documented (documented: {sorted(operation['responses'])})"]
        content = response.get("content", {})
        if content_type == EVENT_STREAM:  # a stream is checked by its type, not read to its end
            return [] if EVENT_STREAM in content else [f"{EVENT_STREAM} is not documented"]
        if method == "HEAD" or not body:
            return [] if not content or method == "HEAD" else ["an empty body where content is documented"]
        if content_type not in content:
            return [
                f"Content-Type {content_type or '(none)'} is not documented (documented: {sorted(content)})"
            ]
        schema = content[content_type].get("schema")
        if schema is None or content_type != "application/json":
            return []
        return doc.validate(schema, parsed)

    @contextmanager
    def instrumented(self) -> Iterator[ResponseChecker]:
        """Check every response that httpx and requests receive inside the block."""
        original_httpx = httpx.HTTPTransport.handle_request
        original_requests = requests.adapters.HTTPAdapter.send
        checker = self

        def httpx_handle(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            response = original_httpx(transport, request)
            if response.headers.get("content-type", "").startswith(EVENT_STREAM):
                checker.check(
                    request.method, str(request.url), response.status_code, dict(response.headers), b""
                )
                return response  # endless: the caller reads it
            response.read()  # cached on the response: the caller reads the same bytes
            checker.check(
                request.method,
                str(request.url),
                response.status_code,
                dict(response.headers),
                response.content,
            )
            return response

        def requests_send(
            adapter: requests.adapters.HTTPAdapter,
            request: requests.PreparedRequest,
            *args: Any,
            **kwargs: Any,
        ) -> requests.Response:
            response = original_requests(adapter, request, *args, **kwargs)
            checker.check(
                str(request.method),
                str(request.url),
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                response.content,
            )
            return response

        patched: list[tuple[Any, str, Callable[..., Any]]] = [
            (httpx.HTTPTransport, "handle_request", httpx_handle),
            (requests.adapters.HTTPAdapter, "send", requests_send),
        ]
        for owner, name, replacement in patched:
            setattr(owner, name, replacement)
        try:
            yield self
        finally:
            httpx.HTTPTransport.handle_request = original_httpx  # type: ignore[method-assign]
            requests.adapters.HTTPAdapter.send = original_requests  # type: ignore[method-assign]
