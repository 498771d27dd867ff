"""Wire schemas of mesh jobs, for the OpenAPI document (rendering lives in jobs.model)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class JobMetadata(BaseModel):
    uid: str = Field(description="Job uid (lowercase UUID).")
    creationTimestamp: str = Field(description="RFC 3339 UTC, second precision.")
    updateTimestamp: str = Field(description="Latest update anywhere in this job's subtree.")


class JobSpec(BaseModel):
    type: str = Field(
        description="Step type for a root job (PreCheck, ControlPlaneUpgrade, ...) or task type."
    )
    target: str | None = Field(None, description="meshup extension: cluster / namespace the job acts on.")
    subjobs: list[MeshJob] = Field(description="Children in execution order; [] for a leaf.")


class JobStatus(BaseModel):
    phase: Literal["Initializing", "Running", "Success", "Failed"]
    reason: str = Field(description='Why the job is in its phase; "" when there is nothing to say.')
    startTime: str = Field(description='When the job started running, or "".')
    completionTime: str = Field(description='When the job reached Success or Failed, or "".')


class MeshJob(BaseModel):
    kind: Literal["Job"]
    apiVersion: Literal["v3"]
    metadata: JobMetadata
    spec: JobSpec
    status: JobStatus


JobSpec.model_rebuild()
