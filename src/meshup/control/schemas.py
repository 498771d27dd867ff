"""Request bodies of the control API (JSON, camelCase like the rest of the service)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResetIn(_Body):
    to: Literal["start", "empty"] = "start"


class ClockIn(_Body):
    mode: Literal["manual", "system"]
    speed: float | None = Field(default=None, ge=0, le=1_000_000)
    now: str | None = Field(default=None, max_length=64)


class AdvanceIn(_Body):
    seconds: float = Field(ge=0, le=10 * 365 * 24 * 3600)


class FaultIn(_Body):
    cluster: str = Field(min_length=1, max_length=64)
    account: str | None = Field(default=None, min_length=1, max_length=64)
    job_type: str = Field(alias="jobType", min_length=1, max_length=64)
    times: int | None = Field(default=None, ge=1, le=1_000_000)
    reason: str | None = Field(default=None, min_length=1, max_length=1024)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)
    workload: str | None = Field(default=None, min_length=1, max_length=253)
    never_ready: bool | None = Field(default=None, alias="neverReady")
    revision: str | None = Field(default=None, min_length=1, max_length=63)
