"""Where the console finds a mesh's upgrade task.

The API has no list of upgrade tasks, so the console remembers the tasks it started (or was told
to track) in a signed cookie of the browser: no state on the server, and nothing another user of
the same browser can use (the cookie names its owner, and every task is read through the API with
the reader's own token). When the API grows ``GET /v1/{project_id}/mesh-upgrade?meshId=…``, a
``TaskIndex`` that asks it replaces ``RememberedTasks`` in ``task_index`` and nothing else changes.
"""

from __future__ import annotations

from typing import Protocol

from meshup.console.session import Session, Signer

TASKS_COOKIE = "meshup_console_tasks"
MAX_REMEMBERED = 24  # meshes; a cookie holds about 4 KB


class TaskIndex(Protocol):
    def latest(self, mesh_id: str) -> str | None:
        """The id of the mesh's current or last upgrade task, if known."""
        ...

    def remember(self, mesh_id: str, task_id: str) -> None: ...

    def forget(self, mesh_id: str, task_id: str) -> None: ...


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
