"""Error envelopes never grow with the input they quote."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from meshup.http.envelopes import (
    ECHO_CHARS,
    MAX_MESSAGE_CHARS,
    bounded,
    echo,
    gateway_body,
    gateway_error,
    keystone_error,
    service_error,
)


def test_short_messages_are_kept_whole() -> None:
    assert bounded("mesh job x not found") == "mesh job x not found"
    assert bounded("a" * MAX_MESSAGE_CHARS) == "a" * MAX_MESSAGE_CHARS


def test_long_messages_are_cut_with_an_ellipsis() -> None:
    assert bounded("a" * (MAX_MESSAGE_CHARS + 1)) == "a" * MAX_MESSAGE_CHARS + "…"


def test_echoed_input_is_a_short_printable_prefix() -> None:
    assert echo("short") == "short"
    assert echo("k" * 500_000) == "k" * ECHO_CHARS + "…"
    assert echo("a\x00b") == "a\\x00b"
    assert echo(12) == "12"


@given(st.text(max_size=2000))
def test_echo_is_bounded_for_any_text(value: str) -> None:
    shown = echo(value)
    assert len(shown) <= ECHO_CHARS + 1
    assert shown.isprintable()


def test_every_envelope_caps_its_message() -> None:
    huge = "spec.config." + "k" * 500_000 + ": unknown field"
    service = json.loads(service_error(400, "ASM.01010001", huge).body)
    assert service["errorCode"] == "ASM.01010001"
    assert len(service["errorMsg"]) == MAX_MESSAGE_CHARS + 1
    keystone = json.loads(keystone_error(400, huge).body)
    assert keystone["error"]["code"] == 400 and keystone["error"]["title"] == "Bad Request"
    assert len(keystone["error"]["message"]) == MAX_MESSAGE_CHARS + 1
    gateway = json.loads(gateway_error("APIGW.0301", huge, "r" * 32).body)
    assert gateway["error_msg"].startswith("Incorrect IAM authentication information: spec.config.")
    assert len(gateway["error_msg"]) == MAX_MESSAGE_CHARS + 1
    refused = json.loads(gateway_body("APIGW.0201", "Request headers too large.", "r" * 32))
    assert refused == {
        "error_code": "APIGW.0201",
        "error_msg": "Request headers too large.",
        "request_id": "r" * 32,
    }


def test_keystone_error_carries_extra_headers() -> None:
    response = keystone_error(405, "no", headers={"Allow": "GET"})
    assert response.headers["Allow"] == "GET"
