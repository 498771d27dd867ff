"""Use cases of mesh jobs: reading one node of a job tree."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from meshup.errors import NotFound, shown
from meshup.iam import actions
from meshup.iam.service import Caller, IdentityService, MeshFacts
from meshup.jobs.model import render
from meshup.store.hot import HotReader

# Anything else cannot be a stored job id; answering 404 without a query keeps hostile ids cheap.
JOB_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# Documents kept per generation: the jobs being polled right now, not the whole table.
MAX_CACHED_DOCUMENTS = 4096


@dataclass(frozen=True, slots=True)
class _Answer:
    """A job as a GET answers it: its project, what authorization needs of its mesh, the bytes."""

    project_id: str
    mesh: MeshFacts
    body: bytes


class JobService:
    def __init__(self, identity: IdentityService, reader: HotReader) -> None:
        self.identity = identity
        self.reader = reader
        # Answers as of one generation (store.hot.Snapshot): a polled job is read and rendered
        # once per commit anywhere, not once per request. Authorization still runs every time.
        self._generation: int | str | None = None
        self._answers: dict[str, _Answer | None] = {}

    async def document(
        self,
        caller: Caller,
        project_id: str,
        job_id: str,
        source_ip: str,
        *,
        generation: int | str | None = None,
    ) -> bytes:
        """The MeshJob document of ``job_id`` and its subtree as JSON bytes (asm-api.md §4).

        Checks run in the order that hides existence: could any policy allow this at all (403,
        before the tree is read), does the job exist in this project (404), does a policy allow it
        on this mesh (403). ``generation`` (from the snapshot read at the request's start) lets
        an answer read since then be reused while nothing was committed.
        """
        self.identity.precheck(caller, actions.GET_UPGRADE_JOB, project_id)
        answer = await self._answer(job_id, generation)
        if answer is None or answer.project_id != project_id:
            raise NotFound(f"mesh job {shown(job_id)} not found")
        self.identity.authorize(caller, actions.GET_UPGRADE_JOB, project_id, answer.mesh, source_ip)
        return answer.body

    async def _answer(self, job_id: str, generation: int | str | None) -> _Answer | None:
        if generation is not None:
            if generation != self._generation:
                self._generation, self._answers = generation, {}
            elif job_id in self._answers:
                return self._answers[job_id]
        answer = await self._read(job_id)
        # Read after the generation was: if anything was committed since, the next request sees
        # a newer generation and drops this, so nothing older than its request is ever served.
        if generation is not None and generation == self._generation:
            if len(self._answers) >= MAX_CACHED_DOCUMENTS:
                self._answers.clear()
            self._answers[job_id] = answer
        return answer

    async def _read(self, job_id: str) -> _Answer | None:
        bundle = await self.reader.bundle(job_id) if JOB_ID.fullmatch(job_id) else None
        if bundle is None:
            return None
        document = render(bundle.nodes, job_id)
        if document is None:
            return None
        mesh = MeshFacts(bundle.mesh_id, bundle.enterprise_project_id or "0", tuple(bundle.tags))
        return _Answer(bundle.project_id, mesh, orjson.dumps(document))
