"""The wire models are the truth: what their JSON schema (the one ``/openapi.json`` publishes)
allows, the parser accepts, and what the parser refuses, the schema does not allow. The few rules
a JSON schema cannot state (a key given twice, an oversized configuration) are the only exception,
and they are said in the schema's descriptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from meshup.errors import InvalidRequest
from meshup.meshes import schemas as mesh_wire
from meshup.upgrades import schemas as task_wire
from tests.unit.test_request_parsing_fuzz import JSON, VALID_MESH, VALID_TASK, mutated, paths

# Refusals a JSON schema cannot express.
NOT_IN_SCHEMA = ("is given twice", "too large")

CASES: dict[str, tuple[type[BaseModel], Callable[[Any], Any], dict[str, Any]]] = {
    "mesh-create": (mesh_wire.MeshCreateBody, mesh_wire.parse_create, VALID_MESH),
    "mesh-update": (
        mesh_wire.MeshUpdateBody,
        mesh_wire.parse_update,
        {"config": VALID_MESH["spec"]["config"]},
    ),
    "task-create": (task_wire.MeshUpgradeCreateBody, task_wire.parse_create, VALID_TASK),
    "task-update": (task_wire.MeshUpgradeUpdateBody, task_wire.parse_change, VALID_TASK),
}
VALIDATORS = {name: Draft202012Validator(model.model_json_schema()) for name, (model, _, _) in CASES.items()}


def agree(name: str, body: Any) -> None:
    _, parse, _ = CASES[name]
    allowed = VALIDATORS[name].is_valid(body)
    try:
        parse(body)
    except InvalidRequest as exc:
        if any(reason in exc.message for reason in NOT_IN_SCHEMA):
            assert allowed  # the schema says it in words only
            return
        assert not allowed, f"the schema allows what the parser refuses ({exc.message}): {body!r}"
        return
    assert allowed, f"the parser accepts what the schema refuses: {body!r}"


@pytest.mark.parametrize("name", list(CASES))
def test_the_valid_bodies_agree(name: str) -> None:
    agree(name, CASES[name][2])


@settings(max_examples=400, deadline=None)
@given(st.data(), JSON, st.sampled_from(list(CASES)))
def test_near_valid_bodies_agree(data: st.DataObject, replacement: Any, name: str) -> None:
    valid = CASES[name][2]
    path = data.draw(st.sampled_from(paths(valid)))
    agree(name, mutated(valid, path, replacement))


@settings(max_examples=200, deadline=None)
@given(JSON, st.sampled_from(list(CASES)))
def test_any_json_agrees(body: Any, name: str) -> None:
    agree(name, body)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("mesh-create", {**VALID_MESH, "metadata": {}}),
        ("mesh-create", {**VALID_MESH, "spec": {**VALID_MESH["spec"], "config": {"sidecar": {}}}}),
        ("mesh-create", {**VALID_MESH, "spec": {**VALID_MESH["spec"], "tags": [{"key": "_sys_x"}]}}),
        ("mesh-create", {**VALID_MESH, "spec": {**VALID_MESH["spec"], "version": "9.9.9-r9"}}),
        ("mesh-update", {"config": {}, "status": {}}),
        ("task-update", {"spec": {}}),
    ],
)
def test_what_used_to_be_refused_behind_the_schema_is_in_it(name: str, body: Any) -> None:
    """Refusals that the old documentation did not show (an empty metadata, unknown config keys, …)."""
    assert not VALIDATORS[name].is_valid(body)
    with pytest.raises(InvalidRequest):
        CASES[name][1](body)


def test_messages_that_echo_input_are_cut_short() -> None:
    key = "k" * 300
    for body, parse in (
        ({"config": {}, key: 1}, mesh_wire.parse_update),
        ({**VALID_MESH, "spec": {**VALID_MESH["spec"], "config": {key: {}}}}, mesh_wire.parse_create),
        (
            {**VALID_MESH, "spec": {**VALID_MESH["spec"], "tags": [{"key": key[:128]}, {"key": key[:128]}]}},
            mesh_wire.parse_create,
        ),
    ):
        with pytest.raises(InvalidRequest) as caught:
            parse(body)
        assert "k" * 65 not in caught.value.message and "k" * 64 + "…" in caught.value.message


def test_fields_are_named_with_their_path() -> None:
    body = {**VALID_MESH, "metadata": {**VALID_MESH["metadata"], "labels": {"": "x"}}}
    with pytest.raises(InvalidRequest, match=r"^metadata\.labels key: must be a non-empty string$"):
        mesh_wire.parse_create(body)
    clusters = [
        {"clusterID": "c1", "installation": {"nodes": {"fieldSelector": {"key": "k", "operator": "NotIn"}}}}
    ]
    body = {**VALID_MESH, "spec": {**VALID_MESH["spec"], "extendParams": {"clusters": clusters}}}
    with pytest.raises(
        InvalidRequest,
        match=r"^spec\.extendParams\.clusters\[0\]\.installation\.nodes\.fieldSelector\.operator: ",
    ):
        mesh_wire.parse_create(body)
    with pytest.raises(
        InvalidRequest, match=r'^metadata: cannot be changed; PUT takes only \{"config": …\}$'
    ):
        mesh_wire.parse_update({"config": {}, "metadata": {}})
    with pytest.raises(InvalidRequest, match=r"^spec\.currentStep\.step: must be one of PreCheck, "):
        task_wire.parse_change({"spec": {"currentStep": {"step": "Upgrade"}}})
