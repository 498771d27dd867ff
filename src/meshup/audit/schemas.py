"""The wire shape of CTS ``ListTraces``: its query parameters, parsed, and its response document
(the names and types of the official SDK's ``ListTracesRequest``/``ListTracesResponse``/``Traces``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from meshup.audit.model import DEFAULT_LIMIT, DEFAULT_WINDOW_MS, MAX_LIMIT, RATINGS, Trace, TraceQuery
from meshup.errors import InvalidRequest, shown

_TEXT_FILTERS = (
    "service_type",
    "user",
    "resource_id",
    "resource_name",
    "resource_type",
    "trace_id",
    "trace_name",
    "trace_rating",
    "access_key_id",
)
_MAX_TEXT = 256


class TraceDomain(BaseModel):
    id: str = Field(description="Account (domain) id.")
    name: str = Field(description="Account (domain) name.")


class TraceUser(BaseModel):
    id: str = Field(description='User id ("" when the caller could not be authenticated).')
    name: str = Field(description="User name.")
    domain: TraceDomain
    account_id: str = Field(description="Account id.")
    access_key_id: str | None = Field(None, description="Access key id of a signed (AK/SK) request.")


class TraceDocument(BaseModel):
    trace_id: str = Field(description="Trace id (UUID).")
    trace_name: str = Field(description="Event name, e.g. createMesh, updateMeshUpgrade, login.")
    trace_rating: Literal["normal", "warning", "incident"]
    trace_type: str = Field(description="Source of the event: ApiCall.")
    service_type: str = Field(description="ASM, IAM or CTS.")
    resource_type: str = Field(description="mesh, meshUpgrade, meshJob, user, trace.")
    resource_id: str
    resource_name: str
    source_ip: str
    request_id: str = Field(description="The X-Request-Id of the call.")
    code: str = Field(description="HTTP status of the answer.")
    time: int = Field(description="When the call was answered, ms since the epoch.")
    record_time: int = Field(description="When the trace was recorded, ms since the epoch.")
    api_version: str
    message: str | None = Field(None, description="Why a call was refused or failed.")
    read_only: bool
    user: TraceUser
    operation_id: str = Field(description="The IAM action of the call, e.g. asm:mesh:upgrade.")


class TraceMetaData(BaseModel):
    count: int = Field(description="How many traces this page holds.")
    marker: str | None = Field(description="Pass as next for the following page; null on the last.")


class TraceList(BaseModel):
    traces: list[TraceDocument]
    meta_data: TraceMetaData


def parse_query(params: Mapping[str, str], now_ms: int) -> TraceQuery:
    """The query of ``GET /v3/{project_id}/traces``; a malformed parameter is a 400 naming it."""
    trace_type = params.get("trace_type", "system")
    if trace_type not in ("system", "data"):
        raise InvalidRequest(f"trace_type: must be system or data, not {shown(trace_type)}")
    limit = _integer(params, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_LIMIT}")
    to_ms = _integer(params, "to", now_ms + 1)  # both bounds exclusive: "now" is included
    from_ms = _integer(params, "from", min(now_ms, to_ms) - DEFAULT_WINDOW_MS)
    text: dict[str, str | None] = {}
    for name in (*_TEXT_FILTERS, "next", "tracker_name"):
        value = params.get(name)
        if value is not None and (len(value) > _MAX_TEXT or "\x00" in value):
            raise InvalidRequest(f"{name}: must be at most {_MAX_TEXT} characters, without NUL")
        text[name] = value or None
    rating = text["trace_rating"]
    if rating is not None and rating not in RATINGS:
        raise InvalidRequest(f"trace_rating: must be one of {', '.join(RATINGS)}")
    tracker = text["tracker_name"]
    # Management events are all in the tracker named "system"; data trackers record none here.
    data = trace_type == "data" or (tracker is not None and tracker != "system")
    return TraceQuery(
        from_ms=from_ms,
        to_ms=to_ms,
        limit=limit,
        next=text["next"],
        service_type=text["service_type"],
        user=text["user"],
        resource_id=text["resource_id"],
        resource_name=text["resource_name"],
        resource_type=text["resource_type"],
        trace_id=text["trace_id"],
        trace_name=text["trace_name"],
        trace_rating=rating,
        access_key_id=text["access_key_id"],
        data=data,
    )


def _integer(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise InvalidRequest(f"{name}: must be a non-negative integer")
    return int(raw)


def render_traces(traces: Sequence[Trace], marker: str | None) -> dict[str, Any]:
    return {
        "traces": [render_trace(trace) for trace in traces],
        "meta_data": {"count": len(traces), "marker": marker},
    }


def render_trace(trace: Trace) -> dict[str, Any]:
    user = trace.user
    return {
        "trace_id": trace.id,
        "trace_name": trace.trace_name,
        "trace_rating": trace.trace_rating,
        "trace_type": trace.trace_type,
        "service_type": trace.service_type,
        "resource_type": trace.resource_type,
        "resource_id": trace.resource_id,
        "resource_name": trace.resource_name,
        "source_ip": trace.source_ip,
        "request_id": trace.request_id,
        "code": str(trace.code),
        "time": trace.time,
        "record_time": trace.record_time,
        "api_version": "v3" if trace.service_type != "ASM" else "v1",
        "message": trace.message or None,
        "read_only": False,
        "user": {
            "id": user.id,
            "name": user.name,
            "domain": {"id": user.domain_id, "name": user.domain_name},
            "account_id": user.domain_id,
            "access_key_id": user.access_key_id or None,
        },
        "operation_id": trace.action,
    }
