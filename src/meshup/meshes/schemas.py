"""The Mesh on the wire (asm-api.md §6, field names as the official SDK models them): one set of
models parses create and update bodies, renders documents and describes both in ``/openapi.json``;
``parse_create``/``parse_update``/``render_mesh`` are the one mapping to and from the domain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from meshup.errors import InvalidRequest, shown
from meshup.meshes.model import DEFAULT_ENTERPRISE_PROJECT, Mesh, MeshCluster, MeshCreate, MeshPhase, Tag
from meshup.meshes.versions import catalogue
from meshup.timefmt import rfc3339
from meshup.wire import NO_NUL, ClosedModel, DocumentModel, RequestModel, construct, explain, validate

MAX_TAGS = 20
MAX_CLUSTERS = 50
MAX_MAP_ENTRIES = 64
MAX_CONFIG_CHARACTERS = 64 * 1024

MESH_NAME = explain(
    r"^[a-z][a-z0-9-]{2,62}[a-z0-9]$",
    "4-64 characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'",
)
CLUSTER_ID = explain(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$", "letters, digits and '-', at most 64 characters")
TAG_KEY = explain(r"^(?![_][Ss][Yy][Ss][_])[^\x00]*$", "must not start with _sys_")

MeshName = Annotated[str, StringConstraints(max_length=64, pattern=MESH_NAME)]
ClusterId = Annotated[str, StringConstraints(max_length=64, pattern=CLUSTER_ID)]
SelectorKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
SelectorValue = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=TAG_KEY)]
TagValue = Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)]
MapKey = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
MapValue = Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL)]
# pydantic states a dict key's pattern as patternProperties, which lets any other key through in
# JSON schema terms; the published schema says what the parser enforces: keys and values alike.
StringMap = Annotated[
    dict[MapKey, MapValue],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_MAP_ENTRIES,
            "propertyNames": {"minLength": 1, "maxLength": 256, "pattern": NO_NUL},
            "additionalProperties": {"type": "string", "maxLength": 256, "pattern": NO_NUL},
        }
    ),
]
EnterpriseProjectId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=NO_NUL)]


# --- parts shared by requests and documents ---------------------------------------------------------


class FieldSelector(RequestModel):
    key: SelectorKey
    operator: Literal["In"]
    values: list[SelectorValue] = Field(min_length=1, max_length=100)


class Selector(RequestModel):
    fieldSelector: FieldSelector


class InstallationConfig(RequestModel):
    nodes: Selector = Field(description="The nodes the control plane runs on.")


class InjectionConfig(RequestModel):
    namespaces: Selector = Field(description="The namespaces whose workloads get sidecars.")


class MeshClusterModel(RequestModel):
    clusterID: ClusterId
    installation: InstallationConfig | None = None
    injection: InjectionConfig | None = None


class TagModel(RequestModel):
    model_config = ConfigDict(strict=True, extra="ignore", regex_engine="python-re")  # look-ahead in TAG_KEY
    key: TagKey = Field(description="1-128 characters, not starting with _sys_.")
    value: TagValue | None = Field(None, description="0-255 characters; null is the empty value.")


class MeshConfigModel(ClosedModel):
    """MeshConfig (as the SDK's): stored and echoed; only its outer shape is checked."""

    unknown_field = "unknown field (allowed: proxyConfig, telemetryConfig)"
    proxyConfig: dict[str, Any] | None = None
    telemetryConfig: dict[str, Any] | None = None


# --- requests -------------------------------------------------------------------------------------


class MeshExtendParams(RequestModel):
    clusters: list[MeshClusterModel] = Field(min_length=1, max_length=MAX_CLUSTERS)
    enterpriseProjectId: EnterpriseProjectId | None = Field(
        None, description='An enterprise project of the account; "0" (default) is the default one.'
    )


class MeshCreateMetadata(RequestModel):
    name: MeshName
    annotations: StringMap | None = Field(None, max_length=MAX_MAP_ENTRIES)
    labels: StringMap | None = Field(None, max_length=MAX_MAP_ENTRIES)


class MeshCreateSpec(RequestModel):
    type: Literal["InCluster"]
    version: Version = Field(json_schema_extra={"enum": list(catalogue().versions)})
    extendParams: MeshExtendParams
    ipv6Enable: bool | None = None
    tags: list[TagModel] | None = Field(None, max_length=MAX_TAGS, description="Keys are unique.")
    config: MeshConfigModel | None = None


class MeshCreateBody(RequestModel):
    """POST body. Read-only fields of the document (``metadata.uid``, ``status``, …) are ignored."""

    kind: Literal["Mesh", "mesh"] | None = None
    apiVersion: Literal["v1"] | None = None
    metadata: MeshCreateMetadata
    spec: MeshCreateSpec


class MeshUpdateBody(ClosedModel):
    """PUT body: the configuration only, as Huawei's UpdateMeshConfig."""

    unknown_field = 'cannot be changed; PUT takes only {"config": …}'
    config: MeshConfigModel


# --- documents -------------------------------------------------------------------------------------


class MeshMetadata(DocumentModel):
    name: str
    uid: str
    creationTimestamp: str
    annotations: dict[str, str]
    labels: dict[str, str]


class MeshDocumentExtendParams(DocumentModel):
    clusters: list[MeshClusterModel]
    enterpriseProjectId: str


class MeshSpec(DocumentModel):
    type: str
    version: str
    extendParams: MeshDocumentExtendParams
    ipv6Enable: bool
    tags: list[TagModel]
    config: MeshConfigModel | None = None


class MeshStatus(DocumentModel):
    phase: MeshPhase
    updateTimestamp: str
    reason: str = Field(description="meshup extension: why the mesh is CreateFailed, DeleteFailed, ….")
    jobId: str = Field(description="meshup extension: its latest CreateMesh/DeleteMesh job.")


class MeshDocument(DocumentModel):
    """The Mesh document (the official SDK's ``huaweicloudsdkasm.v1.model.Mesh``)."""

    apiVersion: Literal["v1"] = "v1"
    kind: Literal["Mesh"] = "Mesh"
    metadata: MeshMetadata
    spec: MeshSpec
    status: MeshStatus


class MeshList(DocumentModel):
    apiVersion: Literal["v1"] = "v1"
    kind: Literal["MeshList"] = "MeshList"
    items: list[MeshDocument]


# --- the mapping ----------------------------------------------------------------------------------


def parse_create(body: Any) -> MeshCreate:
    wire = validate(MeshCreateBody, body)
    spec = wire.spec
    if not catalogue().is_supported(spec.version):
        raise InvalidRequest(
            f"spec.version: {shown(spec.version)} is not supported (supported: {', '.join(catalogue().versions)})"
        )
    seen: set[str] = set()
    for index, cluster in enumerate(spec.extendParams.clusters):
        if cluster.clusterID in seen:
            raise InvalidRequest(
                f"spec.extendParams.clusters[{index}].clusterID: {cluster.clusterID} is given twice"
            )
        seen.add(cluster.clusterID)
    tags: list[Tag] = []
    for index, tag in enumerate(spec.tags or []):
        if any(existing.key == tag.key for existing in tags):
            raise InvalidRequest(f"spec.tags[{index}].key: {shown(tag.key)} is given twice")
        tags.append(Tag(tag.key, tag.value or ""))
    return MeshCreate(
        name=wire.metadata.name,
        type=spec.type,
        version=spec.version,
        enterprise_project_id=spec.extendParams.enterpriseProjectId or DEFAULT_ENTERPRISE_PROJECT,
        tags=tuple(tags),
        clusters=tuple(_cluster(cluster) for cluster in spec.extendParams.clusters),
        ipv6=bool(spec.ipv6Enable),
        config=_config(spec.config, "spec.config"),
        annotations=dict(wire.metadata.annotations or {}),
        labels=dict(wire.metadata.labels or {}),
    )


def parse_update(body: Any) -> dict[str, Any]:
    """The new configuration (PUT changes nothing else)."""
    config = _config(validate(MeshUpdateBody, body).config, "config")
    assert config is not None
    return config


def _cluster(cluster: MeshClusterModel) -> MeshCluster:
    details = cluster.model_dump(mode="json", exclude_none=True, exclude={"clusterID"})
    return MeshCluster(cluster.clusterID, details)


def _config(config: MeshConfigModel | None, path: str) -> dict[str, Any] | None:
    if config is None:
        return None
    stored = config.model_dump(mode="json", exclude_none=True)
    if len(repr(stored)) > MAX_CONFIG_CHARACTERS:
        raise InvalidRequest(f"{path}: too large")
    return stored


def mesh_document(mesh: Mesh) -> MeshDocument:
    spec: dict[str, Any] = {
        "type": mesh.type,
        "version": mesh.version,
        "extendParams": {
            "clusters": [{"clusterID": c.cluster_id, **c.details} for c in mesh.clusters],
            "enterpriseProjectId": mesh.enterprise_project_id,
        },
        "ipv6Enable": mesh.ipv6,
        "tags": [{"key": tag.key, "value": tag.value} for tag in mesh.tags],
        "config": mesh.config,
    }
    return construct(
        MeshDocument,
        {
            "metadata": {
                "name": mesh.name,
                "uid": mesh.id,
                "creationTimestamp": rfc3339(mesh.created_at),
                "annotations": mesh.annotations,
                "labels": mesh.labels,
            },
            "spec": spec,
            "status": {
                "phase": mesh.phase,
                "updateTimestamp": rfc3339(mesh.updated_at),
                "reason": mesh.reason,
                "jobId": mesh.job_id or "",
            },
        },
    )


def render_mesh(mesh: Mesh) -> dict[str, Any]:
    return mesh_document(mesh).model_dump(mode="json", exclude_none=True)


def render_list(meshes: list[Mesh]) -> dict[str, Any]:
    document = MeshList.model_construct(items=[mesh_document(mesh) for mesh in meshes])
    return document.model_dump(mode="json", exclude_none=True)
