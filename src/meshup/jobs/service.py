"""Use cases of mesh jobs: reading one node of a job tree."""

from __future__ import annotations

import re

import orjson
from sqlalchemy import Connection

from meshup.errors import NotFound
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService, MeshFacts
from meshup.jobs.model import assemble, render
from meshup.store import jobs as job_store

# Anything else cannot be a stored job id; answering 404 without a query keeps hostile ids cheap.
_JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def shown(value: str) -> str:
    """A caller-supplied id, bounded and printable, for an error message."""
    clipped = value[:64] + ("…" if len(value) > 64 else "")
    return clipped if clipped.isprintable() else repr(clipped)


class JobService:
    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    def get_document(
        self, conn: Connection, caller: Caller, project_id: str, job_id: str, source_ip: str
    ) -> bytes:
        """The MeshJob document of ``job_id`` and its subtree, as JSON bytes (asm-api.md §4)."""
        self.identity.precheck(caller, actions.GET_UPGRADE_JOB, project_id)
        location = job_store.locate(conn, job_id) if _JOB_ID.match(job_id) else None
        if location is None or location.project_id != project_id:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        mesh = MeshFacts(location.mesh_id, location.enterprise_project_id, location.tags)
        self.identity.authorize(caller, actions.GET_UPGRADE_JOB, project_id, mesh, source_ip)
        nodes = assemble(job_store.load_tree(conn, location.root_id))
        node = nodes.get(job_id)
        if node is None:  # deleted between the two reads of this snapshot's neighbour: treat as gone
            raise NotFound(f"mesh job {shown(job_id)} not found")
        return orjson.dumps(render(node))
