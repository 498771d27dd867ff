"""The documented token request accepts exactly what the login parser accepts."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshup.errors import InvalidRequest
from meshup.iam.login import parse_login
from meshup.iam.schemas import TOKEN_REQUEST_SCHEMAS

VALIDATOR = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/TokenRequest", "components": {"schemas": TOKEN_REQUEST_SCHEMAS}}
)


def parser_accepts(body: Any) -> bool:
    try:
        parse_login(body)
    except InvalidRequest:
        return False
    return True


VALID: list[dict[str, Any]] = [
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "u1", "password": "p"}}}}},
    {
        "auth": {
            "identity": {
                "methods": ["token", "password"],
                "password": {"user": {"name": "alice", "password": "p", "domain": {"name": "acme"}}},
            },
            "scope": {"project": {"name": "cn-north-4", "domain": {"id": "d1"}}},
        }
    },
    {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "alice", "password": "p", "domain": {"id": "d1"}}},
            },
            "scope": {"project": {"id": "p1"}},
        }
    },
    {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": "u1", "password": "p", "domain": None}},
            },
            "scope": {"domain": {"name": "acme", "id": None}},
        }
    },
    {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": {"id": "u1", "password": "p"}}},
            "scope": "unscoped",
        }
    },
]
REPLACEMENTS: list[Any] = [
    None, 0, True, "", "x", "a" * 256, "a" * 257, "a\x00b", "unscoped", "password", [], ["password"], ["token"], {},
    {"id": "x"}, {"name": "x"}, {"id": None, "name": None}, {"project": {"id": "p"}}, {"domain": {"id": "d"}},
]  # fmt: skip
DELETE = object()


def positions(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside a document, the document's own members included."""
    found: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((value, key))
            found.extend(positions(child))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((value, index))
            found.extend(positions(child))
    return found


@st.composite
def login_documents(draw: st.DrawFn) -> Any:
    """A valid request with up to three members replaced or removed: accepted and refused alike."""
    document = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        places = positions(document)
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        replacement = draw(st.sampled_from([DELETE, *REPLACEMENTS]))
        if replacement is DELETE and isinstance(container, dict):
            del container[key]
        else:
            container[key] = copy.deepcopy(replacement if replacement is not DELETE else None)
    return document


@settings(max_examples=600)
@given(login_documents())
@example(
    {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "a", "password": "p", "domain": {"name": "acme"}}},
            },
            "scope": {"project": {"name": "cn-north-4", "domain": {"id": "d"}}},
        }
    }
)
@example(
    {
        "auth": {
            "identity": {
                "methods": ["token", "password"],
                "password": {"user": {"id": "u", "password": "p"}},
            },
            "scope": "unscoped",
        }
    }
)
@example(
    {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": {"id": "u", "password": "p"}}},
            "scope": {"domain": {"name": "acme"}},
        }
    }
)
@example({"auth": {"identity": {"methods": [], "password": {"user": {"id": "u", "password": "p"}}}}})
def test_the_schema_and_the_parser_agree(document: Any) -> None:
    assert VALIDATOR.is_valid(document) == parser_accepts(document), (
        [error.message for error in VALIDATOR.iter_errors(document)],
        document,
    )


def test_both_outcomes_are_exercised() -> None:
    accepted = {
        "auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "u", "password": "p"}}}}
    }
    assert VALIDATOR.is_valid(accepted) and parser_accepts(accepted)
    refused = {
        "auth": {"identity": {"methods": ["token"], "password": {"user": {"id": "u", "password": "p"}}}}
    }
    assert not VALIDATOR.is_valid(refused) and not parser_accepts(refused)
