"""Use cases of mesh jobs: reading one node of a job tree."""

from __future__ import annotations

import re

import orjson
from sqlalchemy import Connection

from meshup.errors import NotFound, shown
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService, MeshFacts
from meshup.jobs.model import render_wire
from meshup.store.hot import JobBundle, read_bundle

# Anything else cannot be a stored job id; answering 404 without a query keeps hostile ids cheap.
JOB_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class JobService:
    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    def document(
        self, caller: Caller, project_id: str, job_id: str, bundle: JobBundle | None, source_ip: str
    ) -> bytes:
        """The MeshJob document of ``job_id`` and its subtree as JSON bytes (asm-api.md §4).

        ``bundle`` is what the database holds for the job (None when the id cannot exist). Checks
        run in the order that hides existence: could any policy allow this at all (403), does the
        job exist in this project (404), does a policy allow it on this mesh (403).
        """
        self.identity.precheck(caller, actions.GET_UPGRADE_JOB, project_id)
        if bundle is None or not bundle.nodes or bundle.project_id != project_id or bundle.mesh_id is None:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        mesh = MeshFacts(bundle.mesh_id, bundle.enterprise_project_id or "0", bundle.tags)
        self.identity.authorize(caller, actions.GET_UPGRADE_JOB, project_id, mesh, source_ip)
        document = render_wire(bundle.nodes, job_id)
        if document is None:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        return orjson.dumps(document)

    def get_document(
        self, conn: Connection, caller: Caller, project_id: str, job_id: str, source_ip: str
    ) -> bytes:
        """The same inside an open transaction (in-process callers and tests)."""
        bundle = None
        if JOB_ID.fullmatch(job_id):
            cursor = conn.connection.cursor()
            try:
                bundle = read_bundle(cursor, conn.dialect.name, job_id)
            finally:
                cursor.close()
        return self.document(caller, project_id, job_id, bundle, source_ip)
