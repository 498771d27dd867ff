"""Mesh on the wire (asm-api.md §6, field names as the official SDK models them): parsing with
precise 400 messages, and the one mapping from a stored mesh to its document."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from meshup.errors import InvalidRequest
from meshup.meshes.versions import catalogue
from meshup.timefmt import rfc3339

MESH_NAME = re.compile(r"^[a-z][a-z0-9-]{2,62}[a-z0-9]$")
CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
MAX_TAGS = 20
MAX_CLUSTERS = 50
DEFAULT_ENTERPRISE_PROJECT = "0"


@dataclass(frozen=True, slots=True)
class MeshCreate:
    name: str
    type: str
    version: str
    enterprise_project_id: str
    tags: tuple[tuple[str, str], ...]
    clusters: tuple[dict[str, Any], ...]
    extra: dict[str, Any]  # ipv6Enable, config, annotations, labels


def _object(value: Any, path: str, *, required: bool = True) -> dict[str, Any]:
    if value is None:
        if required:
            raise InvalidRequest(f"{path}: required")
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: must be an object")
    return value


def _string(value: Any, path: str, *, max_length: int = 256, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InvalidRequest(f"{path}: must be a {'' if allow_empty else 'non-empty '}string")
    if len(value) > max_length:
        raise InvalidRequest(f"{path}: at most {max_length} characters")
    if "\x00" in value:
        raise InvalidRequest(f"{path}: must not contain NUL characters")
    return value


def _string_map(value: Any, path: str) -> dict[str, str]:
    data = _object(value, path, required=False)
    if len(data) > 64:
        raise InvalidRequest(f"{path}: at most 64 entries")
    return {_string(k, f"{path} key"): _string(v, f"{path}.{k}", allow_empty=True) for k, v in data.items()}


def _selector(value: Any, path: str) -> dict[str, Any]:
    data = _object(value, path)
    selector = _object(data.get("fieldSelector"), f"{path}.fieldSelector")
    key = _string(selector.get("key"), f"{path}.fieldSelector.key", max_length=128)
    operator = selector.get("operator")
    if operator != "In":
        raise InvalidRequest(f"{path}.fieldSelector.operator: must be In")
    values = selector.get("values")
    if not isinstance(values, list) or not values or len(values) > 100:
        raise InvalidRequest(f"{path}.fieldSelector.values: must be a list of 1-100 strings")
    checked = [_string(v, f"{path}.fieldSelector.values[{i}]", max_length=256) for i, v in enumerate(values)]
    return {"fieldSelector": {"key": key, "operator": "In", "values": checked}}


def _cluster(value: Any, path: str) -> dict[str, Any]:
    data = _object(value, path)
    cluster_id = _string(data.get("clusterID"), f"{path}.clusterID", max_length=64)
    if not CLUSTER_ID.match(cluster_id):
        raise InvalidRequest(f"{path}.clusterID: letters, digits and '-', at most 64 characters")
    cluster: dict[str, Any] = {"clusterID": cluster_id}
    installation = _object(data.get("installation"), f"{path}.installation", required=False)
    if installation:
        cluster["installation"] = {
            "nodes": _selector(installation.get("nodes"), f"{path}.installation.nodes")
        }
    injection = _object(data.get("injection"), f"{path}.injection", required=False)
    if injection:
        cluster["injection"] = {
            "namespaces": _selector(injection.get("namespaces"), f"{path}.injection.namespaces")
        }
    return cluster


def parse_tags(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(f"{path}: must be a list of {{key, value}}")
    if len(value) > MAX_TAGS:
        raise InvalidRequest(f"{path}: at most {MAX_TAGS} tags")
    tags: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        tag = _object(item, f"{path}[{index}]")
        key = _string(tag.get("key"), f"{path}[{index}].key", max_length=128)
        if key.lower().startswith("_sys_"):
            raise InvalidRequest(f"{path}[{index}].key: must not start with _sys_")
        raw = tag.get("value", "")
        tag_value = _string(
            "" if raw is None else raw, f"{path}[{index}].value", max_length=255, allow_empty=True
        )
        if any(existing == key for existing, _ in tags):
            raise InvalidRequest(f"{path}[{index}].key: {key} is given twice")
        tags.append((key, tag_value))
    return tuple(tags)


def parse_create(body: Any) -> MeshCreate:
    data = _object(body, "body")
    kind = data.get("kind")
    if kind is not None and kind not in ("Mesh", "mesh"):
        raise InvalidRequest("kind: must be Mesh")
    api_version = data.get("apiVersion")
    if api_version is not None and api_version != "v1":
        raise InvalidRequest("apiVersion: must be v1")
    metadata = _object(data.get("metadata"), "metadata")
    name = _string(metadata.get("name"), "metadata.name", max_length=64)
    if not MESH_NAME.match(name):
        raise InvalidRequest(
            "metadata.name: 4-64 characters of lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    spec = _object(data.get("spec"), "spec")
    mesh_type = _string(spec.get("type"), "spec.type")
    if mesh_type != "InCluster":
        raise InvalidRequest("spec.type: must be InCluster")
    version = _string(spec.get("version"), "spec.version", max_length=32)
    if not catalogue().is_supported(version):
        raise InvalidRequest(
            f"spec.version: {version} is not supported (supported: {', '.join(catalogue().versions)})"
        )
    extend = _object(spec.get("extendParams"), "spec.extendParams")
    clusters_value = extend.get("clusters")
    if not isinstance(clusters_value, list) or not clusters_value:
        raise InvalidRequest("spec.extendParams.clusters: at least one cluster is required")
    if len(clusters_value) > MAX_CLUSTERS:
        raise InvalidRequest(f"spec.extendParams.clusters: at most {MAX_CLUSTERS} clusters")
    clusters = [_cluster(c, f"spec.extendParams.clusters[{i}]") for i, c in enumerate(clusters_value)]
    seen: set[str] = set()
    for index, cluster in enumerate(clusters):
        if cluster["clusterID"] in seen:
            raise InvalidRequest(
                f"spec.extendParams.clusters[{index}].clusterID: {cluster['clusterID']} is given twice"
            )
        seen.add(cluster["clusterID"])
    ep_value = extend.get("enterpriseProjectId", DEFAULT_ENTERPRISE_PROJECT)
    enterprise_project_id = _string(
        DEFAULT_ENTERPRISE_PROJECT if ep_value is None else ep_value,
        "spec.extendParams.enterpriseProjectId",
        max_length=64,
    )
    ipv6 = spec.get("ipv6Enable", False)
    if ipv6 is not None and not isinstance(ipv6, bool):
        raise InvalidRequest("spec.ipv6Enable: must be true or false")
    extra: dict[str, Any] = {"ipv6Enable": bool(ipv6)}
    if spec.get("config") is not None:
        extra["config"] = parse_config(spec["config"], "spec.config")
    extra["annotations"] = _string_map(metadata.get("annotations"), "metadata.annotations")
    extra["labels"] = _string_map(metadata.get("labels"), "metadata.labels")
    return MeshCreate(
        name=name,
        type=mesh_type,
        version=version,
        enterprise_project_id=enterprise_project_id,
        tags=parse_tags(spec.get("tags"), "spec.tags"),
        clusters=tuple(clusters),
        extra=extra,
    )


def parse_config(value: Any, path: str) -> dict[str, Any]:
    """MeshConfig: stored and echoed; only its outer shape is checked (the SDK's model)."""
    config = _object(value, path)
    allowed = {"proxyConfig", "telemetryConfig"}
    for key in config:
        if key not in allowed:
            raise InvalidRequest(f"{path}.{key}: unknown field (allowed: proxyConfig, telemetryConfig)")
        _object(config[key], f"{path}.{key}")
    if len(repr(config)) > 64 * 1024:
        raise InvalidRequest(f"{path}: too large")
    return config


def parse_update(body: Any) -> dict[str, Any]:
    """PUT changes the configuration only (as Huawei's UpdateMeshConfig does)."""
    data = _object(body, "body")
    for key in data:
        if key != "config":
            raise InvalidRequest(f'{key}: cannot be changed; PUT takes only {{"config": …}}')
    return parse_config(data.get("config"), "config")


def render_mesh(row: Any) -> dict[str, Any]:
    extra = dict(row.spec_extra or {})
    spec: dict[str, Any] = {
        "type": row.type,
        "version": row.version,
        "extendParams": {
            "clusters": [dict(c) for c in (row.clusters or [])],
            "enterpriseProjectId": row.enterprise_project_id,
        },
        "ipv6Enable": bool(extra.get("ipv6Enable", False)),
        "tags": [{"key": tag["key"], "value": tag.get("value", "")} for tag in (row.tags or [])],
    }
    if extra.get("config") is not None:
        spec["config"] = extra["config"]
    return {
        "apiVersion": "v1",
        "kind": "Mesh",
        "metadata": {
            "name": row.name,
            "uid": row.id,
            "creationTimestamp": rfc3339(row.created_at),
            "annotations": dict(extra.get("annotations") or {}),
            "labels": dict(extra.get("labels") or {}),
        },
        "spec": spec,
        "status": {
            "phase": row.phase,
            "updateTimestamp": rfc3339(row.updated_at),
            "reason": row.reason or "",
            "jobId": row.job_id or "",
        },
    }


class MeshModel(BaseModel):
    """The Mesh document (see the official SDK's huaweicloudsdkasm.v1.model.Mesh)."""

    model_config = ConfigDict(extra="allow")
    apiVersion: str = "v1"
    kind: str = "Mesh"
    metadata: dict[str, Any] = Field(
        description="name (4-64, [a-z0-9-]), uid, creationTimestamp, annotations, labels"
    )
    spec: dict[str, Any] = Field(
        description="type (InCluster), version, extendParams {clusters[], enterpriseProjectId}, ipv6Enable, tags[], config"
    )
    status: dict[str, Any] | None = Field(
        None,
        description="phase, updateTimestamp; meshup extensions: reason, jobId (latest CreateMesh/DeleteMesh job)",
    )


class MeshListModel(BaseModel):
    apiVersion: str = "v1"
    kind: str = "MeshList"
    items: list[MeshModel]


class MeshConfigUpdate(BaseModel):
    """PUT body: the configuration only (proxyConfig, telemetryConfig as the SDK's MeshConfig)."""

    config: dict[str, Any] = Field(description="MeshConfig: proxyConfig, telemetryConfig")
