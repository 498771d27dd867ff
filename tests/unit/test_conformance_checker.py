"""The response checker of the end-to-end suite finds what it is there to find."""

from __future__ import annotations

import json
from typing import Any

from tests.support.conformance import _DOCUMENTS, Document, ResponseChecker

ORIGIN = "http://127.0.0.1:1"
JSON = {"content-type": "application/json"}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        "/things/{id}": {
            "get": {
                "responses": {
                    "200": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}
                    },
                    "404": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ServiceError"}}
                        }
                    },
                }
            },
            "delete": {"responses": {"204": {"description": "gone"}}},
        },
        "/metrics": {
            "get": {"responses": {"200": {"content": {"text/plain": {"schema": {"type": "string"}}}}}}
        },
    },
    "components": {
        "schemas": {
            "Thing": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
            "ServiceError": {
                "type": "object",
                "required": ["errorCode", "errorMsg"],
                "properties": {"errorCode": {"type": "string"}, "errorMsg": {"type": "string"}},
            },
            "KeystoneError": {"type": "object", "required": ["error"]},
            "GatewayError": {
                "type": "object",
                "required": ["error_code", "error_msg", "request_id"],
                "properties": {"error_code": {"type": "string"}},
            },
        }
    },
}


def problems(method: str, path: str, status: int, headers: dict[str, str], body: Any) -> list[str]:
    _DOCUMENTS[ORIGIN] = Document(DOCUMENT)
    checker = ResponseChecker()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    checker.check(method, ORIGIN + path, status, headers, raw)
    return checker.problems


def test_matching_responses_pass() -> None:
    assert problems("GET", "/things/1", 200, JSON, {"id": "1"}) == []
    assert problems("GET", "/things/1/", 404, JSON, {"errorCode": "X", "errorMsg": "no"}) == []
    assert problems("DELETE", "/things/1", 204, {}, b"") == []
    assert problems("GET", "/metrics", 200, {"content-type": "text/plain; version=0.0.4"}, b"# HELP") == []
    assert (
        problems(
            "PUT",
            "/things/1",
            405,
            {**JSON, "allow": "DELETE, GET, HEAD"},
            {"errorCode": "X", "errorMsg": "m"},
        )
        == []
    )
    refused = {"error_code": "APIGW.0201", "error_msg": "Request headers too large.", "request_id": "r"}
    assert problems("GET", "/things/1", 431, JSON, refused) == []


def test_a_body_that_breaks_its_schema_is_reported() -> None:
    assert problems("GET", "/things/1", 200, JSON, {"id": 1})


def test_an_undocumented_status_is_reported() -> None:
    assert "not documented" in problems("GET", "/things/1", 400, JSON, {"errorCode": "X", "errorMsg": "m"})[0]


def test_an_undocumented_content_type_is_reported() -> None:
    assert "Content-Type" in problems("GET", "/metrics", 200, JSON, {"a": 1})[0]


def test_a_405_without_the_documented_allow_is_reported() -> None:
    assert "Allow" in problems("PUT", "/things/1", 405, JSON, {"errorCode": "X", "errorMsg": "m"})[0]
    assert problems("PUT", "/things/1", 405, {**JSON, "allow": "GET"}, {"errorCode": "X", "errorMsg": "m"})


def test_an_unknown_path_must_be_404() -> None:
    assert problems("GET", "/nothing", 200, JSON, {})
    assert problems("GET", "/nothing", 404, JSON, {"errorCode": "X", "errorMsg": "m"}) == []
