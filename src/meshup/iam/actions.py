"""The IAM action catalogue of the ASM endpoints (api contract §3).

Every action has resource type ``mesh`` (URN ``asm:<region>:<account-id>:mesh:<mesh-id>``) except
list and create, which act on no existing mesh. A job and an upgrade task are authorised against the
mesh they belong to. Condition keys are written as Huawei documents them; policy evaluation compares
them case-insensitively and the request context carries them lower-cased (see :func:`context_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CATALOGUE",
    "CREATE",
    "DELETE",
    "ENDPOINTS",
    "GET",
    "GET_NAMESPACE",
    "GET_UPGRADE_JOB",
    "LIST",
    "LIST_NAMESPACES",
    "LIST_TRACES",
    "MESH",
    "UPDATE",
    "UPDATE_NAMESPACE",
    "UPGRADE",
    "AccessLevel",
    "Action",
    "context_key",
    "mesh_urn",
    "request_tag_key",
    "resource_tag_key",
]

AccessLevel = Literal["Read", "Write", "List"]

MESH = "mesh"
"""The one resource type of the ASM actions."""

ENTERPRISE_PROJECT_ID = "g:EnterpriseProjectId"
RESOURCE_TAG = "g:ResourceTag/<tag-key>"
REQUEST_TAG = "g:RequestTag/<tag-key>"
TAG_KEYS = "g:TagKeys"

_ON_MESH = (ENTERPRISE_PROJECT_ID, RESOURCE_TAG)


@dataclass(frozen=True, slots=True)
class Action:
    """One IAM action: ``name`` as used in policies (``asm:mesh:getUpgradeJob``), its access
    level, its resource type (``"mesh"``, or ``None`` when the request names no existing mesh) and
    the service-specific condition keys it offers (global keys like ``g:UserName`` always apply)."""

    name: str
    access_level: AccessLevel
    resource_type: str | None
    condition_keys: tuple[str, ...]


GET_UPGRADE_JOB = Action("asm:mesh:getUpgradeJob", "Read", MESH, _ON_MESH)
UPGRADE = Action("asm:mesh:upgrade", "Write", MESH, _ON_MESH)
CREATE = Action("asm:mesh:create", "Write", None, (ENTERPRISE_PROJECT_ID, REQUEST_TAG, TAG_KEYS))
LIST = Action("asm:mesh:list", "List", None, ())
GET = Action("asm:mesh:get", "Read", MESH, _ON_MESH)
UPDATE = Action("asm:mesh:update", "Write", MESH, _ON_MESH)
DELETE = Action("asm:mesh:delete", "Write", MESH, _ON_MESH)
LIST_NAMESPACES = Action("asm:mesh:listNamespaces", "List", MESH, _ON_MESH)
GET_NAMESPACE = Action("asm:mesh:getNamespace", "Read", MESH, _ON_MESH)
UPDATE_NAMESPACE = Action("asm:mesh:updateNamespace", "Write", MESH, _ON_MESH)

CATALOGUE: Mapping[str, Action] = MappingProxyType(
    {
        a.name: a
        for a in (
            GET_UPGRADE_JOB,
            UPGRADE,
            CREATE,
            LIST,
            GET,
            UPDATE,
            DELETE,
            LIST_NAMESPACES,
            GET_NAMESPACE,
            UPDATE_NAMESPACE,
        )
    }
)
"""Every ASM action by name (as written, camelCase)."""

ENDPOINTS: Mapping[tuple[str, str], Action] = MappingProxyType(
    {
        ("GET", "/v1/{project_id}/mesh-job/{job_id}"): GET_UPGRADE_JOB,
        ("POST", "/v1/{project_id}/mesh-upgrade"): UPGRADE,
        ("GET", "/v1/{project_id}/mesh-upgrade"): UPGRADE,
        ("GET", "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"): UPGRADE,
        ("PUT", "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"): UPGRADE,
        ("DELETE", "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"): UPGRADE,
        ("POST", "/v1/{project_id}/meshes"): CREATE,
        ("GET", "/v1/{project_id}/meshes"): LIST,
        ("GET", "/v1/{project_id}/meshes/{mesh_id}"): GET,
        ("PUT", "/v1/{project_id}/meshes/{mesh_id}"): UPDATE,
        ("DELETE", "/v1/{project_id}/meshes/{mesh_id}"): DELETE,
        ("GET", "/v2/meshes/{mesh_id}/namespaces"): LIST_NAMESPACES,
        ("GET", "/v2/meshes/{mesh_id}/injection"): GET_NAMESPACE,
        ("PUT", "/v2/meshes/{mesh_id}/injection"): UPDATE_NAMESPACE,
    }
)
"""(method, path template) -> action, for every endpoint of api contract §3, the namespace APIs
(docs/namespace-api.md) and the task list. ``POST /mesh-upgrade`` names its mesh in the body and is
authorised against that mesh; the task list is filtered by this action per task's mesh."""


LIST_TRACES = Action("cts:trace:list", "List", None, ())
"""The Cloud Trace Service's action that lists the audit trail of a project (``GET
/v3/{project_id}/traces``); project-level, so not part of the ASM catalogue above."""


def mesh_urn(region: str, account_id: str, mesh_id: str) -> str:
    """``asm:<region>:<account-id>:mesh:<mesh-id>``; no part may be empty or contain ``:``."""
    for part, what in ((region, "region"), (account_id, "account id"), (mesh_id, "mesh id")):
        if not part or ":" in part:
            raise ValueError(f"{what} {part!r} cannot be part of a URN")
    return f"asm:{region}:{account_id}:{MESH}:{mesh_id}"


def context_key(key: str) -> str:
    """The request-context name of a condition key (lower-cased): ``g:UserName`` -> ``g:username``."""
    return key.lower()


def resource_tag_key(tag_key: str) -> str:
    """The context key of a tag of the target mesh: ``g:resourcetag/<tag-key>``."""
    return f"g:resourcetag/{tag_key.lower()}"


def request_tag_key(tag_key: str) -> str:
    """The context key of a tag in a create request's body: ``g:requesttag/<tag-key>``."""
    return f"g:requesttag/{tag_key.lower()}"
