"""Request bodies of every write endpoint: any JSON value is either accepted or a clean 400."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshup.errors import InvalidRequest
from meshup.iam.login import parse_login
from meshup.meshes.schemas import parse_create, parse_update
from meshup.upgrades.schemas import parse_change
from meshup.upgrades.schemas import parse_create as parse_task

KEYS = st.sampled_from(
    [
        "kind",
        "apiVersion",
        "metadata",
        "spec",
        "name",
        "type",
        "version",
        "extendParams",
        "clusters",
        "clusterID",
        "installation",
        "nodes",
        "fieldSelector",
        "key",
        "operator",
        "values",
        "tags",
        "value",
        "config",
        "proxyConfig",
        "ipv6Enable",
        "enterpriseProjectId",
        "meshId",
        "upgradeStrategy",
        "targetVersion",
        "targetType",
        "currentStep",
        "step",
        "namespaces",
        "auth",
        "identity",
        "methods",
        "password",
        "user",
        "domain",
        "scope",
        "project",
        "id",
        "labels",
        "annotations",
        "injection",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        ["Mesh", "v1", "InCluster", "1.15.7-r1", "In", "Canary", "PreCheck", "password", "a\x00b", "x" * 300]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)


def accepted_or_400(parse: Any, body: Any) -> None:
    try:
        parse(body)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.message


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_mesh_create(body: Any) -> None:
    accepted_or_400(parse_create, body)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_mesh_update(body: Any) -> None:
    accepted_or_400(parse_update, body)


@settings(max_examples=300, deadline=None)
@given(JSON, st.booleans())
def test_upgrade_task(body: Any, create: bool) -> None:
    accepted_or_400(parse_task if create else parse_change, body)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_login(body: Any) -> None:
    accepted_or_400(parse_login, body)


VALID_MESH: dict[str, Any] = {
    "kind": "Mesh",
    "apiVersion": "v1",
    "metadata": {"name": "mesh-one", "labels": {"a": "b"}, "annotations": {}},
    "spec": {
        "type": "InCluster",
        "version": "1.15.7-r1",
        "extendParams": {
            "clusters": [
                {
                    "clusterID": "c1",
                    "installation": {
                        "nodes": {"fieldSelector": {"key": "k", "operator": "In", "values": ["v"]}}
                    },
                    "injection": {
                        "namespaces": {"fieldSelector": {"key": "k", "operator": "In", "values": ["v"]}}
                    },
                }
            ],
            "enterpriseProjectId": "0",
        },
        "ipv6Enable": False,
        "tags": [{"key": "team", "value": "payments"}],
        "config": {"proxyConfig": {"includeIPRanges": "*"}, "telemetryConfig": {}},
    },
}
VALID_TASK: dict[str, Any] = {
    "kind": "MeshUpgrade",
    "apiVersion": "v1",
    "metadata": {"name": "to-1-18"},
    "spec": {
        "meshId": "9b2f4c1e-0000-4000-8000-000000000001",
        "upgradeStrategy": "Canary",
        "targetVersion": "1.18.7-r5",
        "targetType": "InCluster",
        "currentStep": {"step": "DataPlaneUpgrade", "namespaces": ["shop"]},
    },
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutated(document: dict[str, Any], path: tuple[Any, ...], replacement: Any) -> Any:
    import copy

    if not path:
        return replacement
    body = copy.deepcopy(document)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = replacement
    return body


@settings(max_examples=400, deadline=None)
@given(st.data(), JSON)
def test_near_valid_mesh_bodies(data: st.DataObject, replacement: Any) -> None:
    path = data.draw(st.sampled_from(paths(VALID_MESH)))
    accepted_or_400(parse_create, mutated(VALID_MESH, path, replacement))


@settings(max_examples=300, deadline=None)
@given(st.data(), JSON, st.booleans())
def test_near_valid_task_bodies(data: st.DataObject, replacement: Any, create: bool) -> None:
    path = data.draw(st.sampled_from(paths(VALID_TASK)))
    accepted_or_400(parse_task if create else parse_change, mutated(VALID_TASK, path, replacement))


def test_the_valid_bodies_are_accepted() -> None:
    assert parse_create(VALID_MESH).name == "mesh-one"
    assert parse_task(VALID_TASK).target_version == "1.18.7-r5"
    assert parse_change(VALID_TASK).current_step is not None
