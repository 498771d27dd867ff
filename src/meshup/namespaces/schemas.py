"""The namespace APIs on the wire, shaped as Huawei's API reference documents them (see
docs/namespace-api.md): one set of models parses the update body, renders the answers and
describes them in ``/openapi.json``; ``parse_change`` and the ``render_*`` functions are the one
mapping to and from :mod:`meshup.namespaces.model`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from meshup.namespaces.model import InjectionChange, MeshNamespaces, SidecarInjection
from meshup.wire import NO_NUL, DocumentModel, RequestModel, construct, validate

MAX_NAMESPACES = 1000
ENABLED, DISABLED = "enabled", "disabled"

NamespaceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NO_NUL)]
ClusterId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]


class Injection(DocumentModel):
    istioInjection: str = Field(description="enabled | disabled")


class InjectionRequestEntry(RequestModel):
    istioInjection: str | None = None


class SidecarInjectionBody(RequestModel):
    """``PUT /v2/meshes/{mesh_id}/injection``. ``InjectNamespaces`` is the whole set of injected
    namespaces of the cluster (or of every cluster of the mesh without ``clusterId``)."""

    clusterId: ClusterId | None = Field(None, description="Absent: every cluster of the mesh.")
    restartNamespacePod: bool = Field(description="Restart the workloads of the namespaces that change.")
    InjectNamespaces: list[NamespaceName] = Field(max_length=MAX_NAMESPACES)
    allowNsInject: bool | None = Field(None, description="Accepted and ignored: meshup always allows it.")
    namespaces: dict[str, InjectionRequestEntry] | None = Field(None, description="Accepted and ignored.")
    errMsg: str | None = Field(None, description="Accepted and ignored.")


class SidecarInjectionDocument(DocumentModel):
    clusterId: str
    restartNamespacePod: bool
    InjectNamespaces: list[str]
    allowNsInject: bool
    namespaces: dict[str, Injection]
    errMsg: str


class NamespaceListDocument(DocumentModel):
    mesh_id: str
    namespaces: list[str]


def parse_change(body: Any) -> InjectionChange:
    wire = validate(SidecarInjectionBody, body)
    return InjectionChange(
        cluster_id=wire.clusterId,
        inject=tuple(dict.fromkeys(wire.InjectNamespaces)),
        restart=wire.restartNamespacePod,
    )


def render_injection(injection: SidecarInjection) -> dict[str, Any]:
    document = construct(
        SidecarInjectionDocument,
        {
            "clusterId": injection.cluster_id,
            "restartNamespacePod": injection.restart,
            "InjectNamespaces": list(injection.injected),
            "allowNsInject": True,
            "namespaces": {
                name: Injection.model_construct(istioInjection=ENABLED if on else DISABLED)
                for name, on in injection.namespaces.items()
            },
            "errMsg": "",
        },
    )
    return document.model_dump(mode="json")


def render_namespaces(found: MeshNamespaces) -> dict[str, Any]:
    return NamespaceListDocument.model_construct(
        mesh_id=found.mesh_id, namespaces=list(found.names)
    ).model_dump(mode="json")
