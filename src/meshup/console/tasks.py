"""Where the console finds a mesh's upgrade task, and the mesh's upgrade history.

The API lists a mesh's tasks (``GET /v1/{project_id}/mesh-upgrade?meshId=…``, newest first):
:class:`ListedTasks` reads that list with the reader's own token. A mesh has one active task at
most and a new one can only be created when none is active, so the newest task is the current or
last one. Where the list is not available to the reader, the console falls back to the tasks it
started (or was told to track), remembered in a signed cookie of the browser
(:class:`RememberedTasks`): no state on the server, and nothing another user of the same browser
can use (the cookie names its owner, and every task is read through the API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from meshup.console.session import Session, Signer

TASKS_COOKIE = "meshup_console_tasks"
MAX_REMEMBERED = 24  # meshes; a cookie holds about 4 KB


class TaskIndex(Protocol):
    def latest(self, mesh_id: str) -> str | None:
        """The id of the mesh's current or last upgrade task, if known."""
        ...

    def remember(self, mesh_id: str, task_id: str) -> None: ...

    def forget(self, mesh_id: str, task_id: str) -> None: ...


HISTORY = 20  # tasks shown in a mesh's upgrade history


@dataclass(frozen=True, slots=True)
class PastTask:
    id: str
    name: str
    target_version: str
    step: str
    phase: str
    created: str


def _text(document: Any, *path: str) -> str:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return "" if document is None else str(document)


class ListedTasks:
    """A mesh's tasks as the API lists them; ``remember``/``forget`` also keep the fallback
    (the cookie) current, for a reader or moment without the list."""

    def __init__(self, mesh_id: str, document: Any, fallback: TaskIndex) -> None:
        self.mesh_id = mesh_id
        self.fallback = fallback
        items = document.get("items") if isinstance(document, dict) else None
        self.history = tuple(
            PastTask(
                id=_text(item, "metadata", "uid"),
                name=_text(item, "metadata", "name"),
                target_version=_text(item, "spec", "targetVersion"),
                step=_text(item, "status", "step"),
                phase=_text(item, "status", "phase"),
                created=_text(item, "metadata", "creationTimestamp"),
            )
            for item in (items if isinstance(items, list) else [])
            if _text(item, "metadata", "uid")
        )

    def latest(self, mesh_id: str) -> str | None:
        if mesh_id != self.mesh_id:
            return self.fallback.latest(mesh_id)
        return self.history[0].id if self.history else None

    def remember(self, mesh_id: str, task_id: str) -> None:
        self.fallback.remember(mesh_id, task_id)

    def forget(self, mesh_id: str, task_id: str) -> None:
        self.fallback.forget(mesh_id, task_id)


class RememberedTasks:
    """The latest task id per mesh, most recently used first, in one signed cookie."""

    def __init__(self, signer: Signer, cookie: str | None, session: Session) -> None:
        self.signer = signer
        self.owner = f"{session.who}@{session.project_id}"
        self.changed = False
        self._entries: list[tuple[str, str]] = []
        value = signer.unseal("tasks", cookie)
        entries = value.get("m") if value is not None and value.get("o") == self.owner else None
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry):
                    self._entries.append((entry[0], entry[1]))

    def latest(self, mesh_id: str) -> str | None:
        return next((task for mesh, task in self._entries if mesh == mesh_id), None)

    def remember(self, mesh_id: str, task_id: str) -> None:
        self._entries = [(mesh_id, task_id), *((m, t) for m, t in self._entries if m != mesh_id)]
        del self._entries[MAX_REMEMBERED:]
        self.changed = True

    def forget(self, mesh_id: str, task_id: str) -> None:
        before = len(self._entries)
        self._entries = [(m, t) for m, t in self._entries if (m, t) != (mesh_id, task_id)]
        self.changed = self.changed or len(self._entries) != before

    def cookie(self) -> str:
        return self.signer.seal("tasks", {"o": self.owner, "m": [list(entry) for entry in self._entries]})
