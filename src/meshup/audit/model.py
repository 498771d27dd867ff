"""Traces in the shape of the Cloud Trace Service (CTS): what one is, how a call is named, and
the query ``ListTraces`` answers. Pure: no database, no web framework.

A trace names who called (user and account, ids and names, the access key id when signed), from
where (source IP), what (the IAM action and a CTS ``trace_name`` such as ``createMesh``), on what
(resource type, id, name), and how it ended (HTTP status as ``code``, ``trace_rating``). It never
holds a request body, a password, a token, a secret key or a signature.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

SERVICE_ASM = "ASM"
SERVICE_IAM = "IAM"
SERVICE_CTS = "CTS"

API_CALL = "ApiCall"
"""``trace_type`` of a trace: the source of the event (CTS also knows ConsoleAction, SystemAction)."""

NORMAL, WARNING, INCIDENT = "normal", "warning", "incident"
RATINGS = (NORMAL, WARNING, INCIDENT)

DEFAULT_LIMIT = 10
MAX_LIMIT = 200
DEFAULT_WINDOW_MS = 3_600_000
"""Without ``from``, CTS lists the last hour."""


def rating(code: int) -> str:
    """``normal`` for a success, ``warning`` for a refusal (4xx), ``incident`` for a failure (5xx)."""
    if code >= 500:
        return INCIDENT
    if code >= 400:
        return WARNING
    return NORMAL


def epoch_ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class TraceUser:
    id: str = ""
    name: str = ""
    domain_id: str = ""
    domain_name: str = ""
    access_key_id: str = ""


@dataclass(frozen=True, slots=True)
class Trace:
    id: str
    account_id: str
    project_id: str | None  # None: an account-wide event (a login), listed in every project
    time: int  # ms since the epoch
    record_time: int
    service_type: str
    trace_name: str
    trace_type: str
    trace_rating: str
    action: str  # the IAM action, e.g. asm:mesh:upgrade ("" when none applies)
    resource_type: str
    resource_id: str
    resource_name: str
    code: int
    request_id: str
    source_ip: str
    user: TraceUser
    message: str = ""  # why a call was refused or failed; never a secret


@dataclass(frozen=True, slots=True)
class CallName:
    """How CTS names calls of one API: event name, service and resource type, and the path
    parameter that holds the resource id."""

    trace_name: str
    resource_type: str
    service_type: str = SERVICE_ASM
    id_parameter: str | None = None


_MESHES = "/v1/{project_id}/meshes"
_MESH = "/v1/{project_id}/meshes/{mesh_id}"
_TASKS = "/v1/{project_id}/mesh-upgrade"
_TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
_JOB = "/v1/{project_id}/mesh-job/{job_id}"
TRACES_PATH = "/v3/{project_id}/traces"

CALL_NAMES: Mapping[tuple[str, str], CallName] = MappingProxyType(
    {
        ("POST", _MESHES): CallName("createMesh", "mesh"),
        ("GET", _MESHES): CallName("listMeshes", "mesh"),
        ("GET", _MESH): CallName("showMesh", "mesh", id_parameter="mesh_id"),
        ("PUT", _MESH): CallName("updateMesh", "mesh", id_parameter="mesh_id"),
        ("DELETE", _MESH): CallName("deleteMesh", "mesh", id_parameter="mesh_id"),
        ("POST", _TASKS): CallName("createMeshUpgrade", "meshUpgrade"),
        ("GET", _TASK): CallName("showMeshUpgrade", "meshUpgrade", id_parameter="mesh_upgrade_id"),
        ("PUT", _TASK): CallName("updateMeshUpgrade", "meshUpgrade", id_parameter="mesh_upgrade_id"),
        ("DELETE", _TASK): CallName("deleteMeshUpgrade", "meshUpgrade", id_parameter="mesh_upgrade_id"),
        ("GET", _JOB): CallName("showMeshJob", "meshJob", id_parameter="job_id"),
        ("GET", TRACES_PATH): CallName("listTraces", "trace", SERVICE_CTS),
    }
)
"""(method, path template) -> the CTS names of its calls: one place for every API."""

LOGIN = CallName("login", "user", SERVICE_IAM)


def call_name(method: str, template: str) -> CallName:
    return CALL_NAMES.get((method, template)) or CallName(f"{method.lower()}Request", "api")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """What a route knows of one call before the service runs: who, from where, which API. The
    service completes it with the resource and adds the trace in its own unit of work."""

    account_id: str
    project_id: str | None
    request_id: str
    source_ip: str
    user: TraceUser
    name: CallName
    action: str
    code: int  # the status a success answers with (200, 201)
    resource_id: str = ""

    def succeeded(self, now: datetime, *, resource_id: str = "", resource_name: str = "") -> Trace:
        return self.ended(now, self.code, resource_id=resource_id, resource_name=resource_name)

    def ended(
        self, now: datetime, code: int, *, message: str = "", resource_id: str = "", resource_name: str = ""
    ) -> Trace:
        ms = epoch_ms(now)
        return Trace(
            id=str(uuid.uuid4()),
            account_id=self.account_id,
            project_id=self.project_id,
            time=ms,
            record_time=ms,
            service_type=self.name.service_type,
            trace_name=self.name.trace_name,
            trace_type=API_CALL,
            trace_rating=rating(code),
            action=self.action,
            resource_type=self.name.resource_type,
            resource_id=resource_id or self.resource_id,
            resource_name=resource_name,
            code=code,
            request_id=self.request_id,
            source_ip=self.source_ip,
            user=self.user,
            message=message,
        )

    def with_user(self, user: TraceUser) -> TraceContext:
        return dataclasses.replace(self, user=user)


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """``ListTraces`` filters, parsed. Times are ms since the epoch, both bounds exclusive."""

    from_ms: int
    to_ms: int
    limit: int = DEFAULT_LIMIT
    next: str | None = None
    service_type: str | None = None
    user: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    resource_type: str | None = None
    trace_id: str | None = None
    trace_name: str | None = None
    trace_rating: str | None = None
    access_key_id: str | None = None
    data: bool = False  # trace_type=data: object-storage data events; meshup records none
