"""Request bodies: JSON in UTF-8, said so by the content type (asm-api.md §1)."""

from __future__ import annotations

import pytest

from meshup.errors import InvalidRequest
from meshup.http.requests import json_body
from meshup.iam.service import IncomingRequest


def request(content_type: bytes | None, body: bytes = b'{"a": 1}') -> IncomingRequest:
    headers = {} if content_type is None else {"content-type": content_type}
    return IncomingRequest("POST", b"/x", b"", headers, body, "127.0.0.1")


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"application/json;charset=utf-8",
        b"Application/JSON; charset=UTF-8",
        b'application/json; charset="utf-8"',
    ],
)
def test_json_content_types_are_accepted(content_type: bytes) -> None:
    assert json_body(request(content_type)) == {"a": 1}


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        (None, b"{}", "Content-Type must be application/json"),
        (b"text/plain", b"{}", "Content-Type must be application/json"),
        (b"application/jsonx", b"{}", "Content-Type must be application/json"),
        (b"application/json; charset=iso-8859-1", b"{}", "must be UTF-8"),
        (b"application/json", b"", "request body: required"),
        (b"application/json", b"{", "malformed JSON"),
        (b"application/json", b"\xff\xfe", "malformed JSON"),
    ],
)
def test_bad_bodies_are_400(content_type: bytes | None, body: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        json_body(request(content_type, body))
