"""A mesh's live region as the API shows it to the signed-in user.

The mesh, its current or last upgrade task, its upgrade history and the job of the step that runs,
read through the API with the user's token. The mesh's page, its fragment URL and its event stream
all read them here, so that the three show the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshup.console.api import ApiReply, segment
from meshup.console.live import Mode
from meshup.console.pages import BASE
from meshup.console.tasks import HISTORY, ListedTasks, PastTask, TaskIndex
from meshup.console.views import MeshView, TaskView, TreeRow, mesh_view, task_view, tree_rows, upgrade_targets
from meshup.console.visit import Visit


def mesh_url(mesh_id: str) -> str:
    return f"{BASE}/meshes/{segment(mesh_id)}"


@dataclass(frozen=True, slots=True)
class MeshState:
    mesh: MeshView
    url: str  # the mesh's page
    task: TaskView | None
    task_error: str | None
    history: tuple[PastTask, ...] | None  # None: the reader may not list the mesh's tasks

    @property
    def active(self) -> bool:
        """Whether something moves on its own (the region then keeps itself current)."""
        return self.mesh.moving or (self.task is not None and self.task.running)

    @property
    def job_id(self) -> str:
        """The job the region shows: the task's last step's, or the mesh's own while it moves."""
        if self.task is not None:
            return self.task.job_id
        return self.mesh.job_id if self.mesh.moving else ""

    def context(
        self,
        mode: Mode,
        *,
        tree: list[TreeRow] | None = None,
        tree_error: str | None = None,
        notice: str | None = None,
    ) -> dict[str, Any]:
        """What ``_live.html`` (and ``mesh.html``) are rendered with."""
        return {
            "mesh": self.mesh,
            "mesh_url": self.url,
            "live_url": f"{self.url}/live",
            "events_url": f"{self.url}/live/events",
            "live_mode": mode,
            "task": self.task,
            "task_error": self.task_error,
            "tree": tree,
            "tree_error": tree_error,
            "targets": upgrade_targets(self.mesh.version),
            "history": self.history,
            "notice": notice,
        }


async def read_mesh(visit: Visit, mesh_id: str, index: TaskIndex) -> MeshState | ApiReply:
    """The mesh's state, or the API's refusal to show the mesh itself."""
    project = visit.project
    reply = await visit.call("GET", f"/v1/{project}/meshes/{segment(mesh_id)}")
    if not reply.ok:
        return reply
    task = task_error = None
    listed = await visit.call("GET", f"/v1/{project}/mesh-upgrade?limit={HISTORY}&meshId={segment(mesh_id)}")
    tasks: TaskIndex = ListedTasks(mesh_id, listed.body, index) if listed.ok else index
    task_id = tasks.latest(mesh_id)
    if task_id is not None:
        task_reply = await visit.call("GET", f"/v1/{project}/mesh-upgrade/{segment(task_id)}")
        if task_reply.ok:
            task = task_view(task_reply.body)
        elif task_reply.status == 404:
            tasks.forget(mesh_id, task_id)  # deleted through the API
        else:
            task_error = task_reply.message
    return MeshState(
        mesh=mesh_view(reply.body),
        url=mesh_url(mesh_id),
        task=task,
        task_error=task_error,
        history=tasks.history if isinstance(tasks, ListedTasks) else None,
    )


async def read_tree(visit: Visit, job_id: str) -> tuple[list[TreeRow] | None, str | None]:
    """The rows of a job's tree, or the API's refusal to show it."""
    if not job_id:
        return None, None
    reply = await visit.call("GET", f"/v1/{visit.project}/mesh-job/{segment(job_id)}")
    return (tree_rows(reply.body), None) if reply.ok else (None, reply.message)
