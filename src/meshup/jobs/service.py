"""Use cases of mesh jobs: reading one node of a job tree."""

from __future__ import annotations

import re

import orjson

from meshup.errors import NotFound, shown
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService, MeshFacts
from meshup.jobs.model import render
from meshup.store.hot import HotReader

# Anything else cannot be a stored job id; answering 404 without a query keeps hostile ids cheap.
JOB_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class JobService:
    def __init__(self, identity: IdentityService, reader: HotReader) -> None:
        self.identity = identity
        self.reader = reader

    async def document(self, caller: Caller, project_id: str, job_id: str, source_ip: str) -> bytes:
        """The MeshJob document of ``job_id`` and its subtree as JSON bytes (asm-api.md §4).

        Checks run in the order that hides existence: could any policy allow this at all (403,
        before the tree is read), does the job exist in this project (404), does a policy allow it
        on this mesh (403).
        """
        self.identity.precheck(caller, actions.GET_UPGRADE_JOB, project_id)
        bundle = await self.reader.bundle(job_id) if JOB_ID.fullmatch(job_id) else None
        if bundle is None or bundle.project_id != project_id:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        mesh = MeshFacts(bundle.mesh_id, bundle.enterprise_project_id or "0", bundle.tags)
        self.identity.authorize(caller, actions.GET_UPGRADE_JOB, project_id, mesh, source_ip)
        document = render(bundle.nodes, job_id)
        if document is None:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        return orjson.dumps(document)
