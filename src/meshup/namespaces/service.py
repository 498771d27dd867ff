"""Use cases of the namespace APIs: list a mesh's namespaces, read and change sidecar injection.

Changing injection is synchronous, as Huawei's API is (it answers with the configuration, not a
job): the labels change through the cluster driver, and with ``restartNamespacePod`` a restart of
the workloads is requested, not awaited. The mesh's active upgrade task then follows the change
(:func:`meshup.upgrades.model.follow_injection`), in its own unit of work: drivers own their
transactions, so none is open while they run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from meshup.clock import Clock
from meshup.drivers.base import ClusterDriver, ClusterDrivers, ClusterFacts, Refused, Requester, revision_of
from meshup.errors import Conflict, NotFound, shown
from meshup.iam import actions
from meshup.iam.resources import mesh_facts
from meshup.iam.service import Caller, IdentityService
from meshup.injection import is_injected
from meshup.meshes.model import Mesh
from meshup.namespaces.model import InjectionChange, MeshNamespaces, SidecarInjection
from meshup.store.uow import UnitOfWork, UnitOfWorkFactory
from meshup.upgrades.model import TaskPhase, UpgradeTask, follow_injection

REQUESTER = "UpdateSidecarInjection"
"""The job type a driver sees for these requests (simulated faults can target it)."""


class NamespaceService:
    def __init__(
        self, identity: IdentityService, uow: UnitOfWorkFactory, drivers: ClusterDrivers, clock: Clock
    ) -> None:
        self.identity = identity
        self.uow = uow
        self.drivers = drivers
        self.clock = clock

    # -- the API ---------------------------------------------------------------------------------

    def list_namespaces(self, caller: Caller, project_id: str, mesh_id: str, ip: str) -> MeshNamespaces:
        self.identity.precheck(caller, actions.LIST_NAMESPACES, project_id)
        with self.uow(read_only=True) as uow:
            mesh = self._visible(uow, caller, project_id, mesh_id, actions.LIST_NAMESPACES, ip)
        driver = self.drivers.for_account(mesh.account_id)
        names = {ns.name for cluster_id in mesh.cluster_ids for ns in driver.facts(cluster_id).namespaces}
        return MeshNamespaces(mesh.id, tuple(sorted(names)))

    def get_injection(
        self, caller: Caller, project_id: str, mesh_id: str, cluster_id: str | None, ip: str
    ) -> SidecarInjection:
        self.identity.precheck(caller, actions.GET_NAMESPACE, project_id)
        with self.uow(read_only=True) as uow:
            mesh = self._visible(uow, caller, project_id, mesh_id, actions.GET_NAMESPACE, ip)
            task = uow.tasks.active_for_mesh(mesh.id)
        cluster = self._cluster(mesh, cluster_id)
        facts = self.drivers.for_account(mesh.account_id).facts(cluster)
        return _view(facts, _revisions(mesh, task), restart=False)

    def update_injection(
        self, caller: Caller, project_id: str, mesh_id: str, change: InjectionChange, ip: str
    ) -> SidecarInjection:
        self.identity.precheck(caller, actions.UPDATE_NAMESPACE, project_id)
        with self.uow(read_only=True) as uow:
            mesh = self._visible(uow, caller, project_id, mesh_id, actions.UPDATE_NAMESPACE, ip)
            task = uow.tasks.active_for_mesh(mesh.id)
        if mesh.phase.busy or (task is not None and task.phase is TaskPhase.RUNNING):
            doing = (
                f"upgrade task {task.id} is running a step"
                if task is not None
                else f"it is {mesh.phase.value}"
            )
            raise Conflict(f"mesh {mesh.name}: {doing}; change injection when its job has finished")
        clusters = [self._cluster(mesh, change.cluster_id)] if change.cluster_id else mesh.cluster_ids
        driver = self.drivers.for_account(mesh.account_id)
        facts = [driver.facts(cluster_id) for cluster_id in clusters]
        known = {ns.name for cluster in facts for ns in cluster.namespaces}
        for name in change.inject:
            if name not in known:
                where = f"cluster {clusters[0]}" if change.cluster_id else f"the clusters of mesh {mesh.name}"
                # A name that refers to nothing is 404, like an unknown mesh: what exists is data.
                raise NotFound(f"InjectNamespaces: {shown(name)} is not a namespace of {where}")
        revisions = _revisions(mesh, task)
        asker_id = str(uuid.uuid4())  # one request: a driver may record it as one job
        try:
            for cluster in facts:
                self._apply(driver, cluster, revisions, change, asker_id, revision_of(mesh.version))
        finally:
            if task is not None:  # also after a refusal: what did change, the task follows
                self._follow(mesh, task.id, driver)
        return _view(driver.facts(clusters[0]), revisions, restart=change.restart)

    # -- helpers ---------------------------------------------------------------------------------

    def _apply(
        self,
        driver: ClusterDriver,
        cluster: ClusterFacts,
        revisions: Sequence[str],
        change: InjectionChange,
        asker_id: str,
        revision: str,
    ) -> None:
        for namespace in cluster.namespaces:
            wanted = namespace.name in change.inject
            if wanted == is_injected(namespace, revisions):
                continue  # as asked already: no relabel, no restart
            asker = Requester(REQUESTER, asker_id, namespace.name)
            try:
                driver.ensure_namespace_injection(
                    cluster.cluster_id,
                    namespace.name,
                    revision if wanted else None,
                    restart=change.restart,
                    asker=asker,
                )
            except Refused as refused:
                raise Conflict(str(refused)) from None

    def _follow(self, mesh: Mesh, task_id: str, driver: ClusterDriver) -> None:
        """The active task's pending and migrated namespaces follow what the mesh injects now."""
        with self.uow() as uow:
            task = uow.tasks.get(task_id, lock=True)
            if task is None or not task.active:
                return
            revisions = _revisions(mesh, task)
            injected = [
                ns.name
                for cluster_id in mesh.cluster_ids
                for ns in driver.facts(cluster_id).namespaces
                if is_injected(ns, revisions)
            ]
            state = follow_injection(task.state, injected)
            if state == task.state:
                return
            task.state, task.updated_at = state, self.clock.now()
            uow.tasks.save(task)
            uow.commit()

    def _cluster(self, mesh: Mesh, cluster_id: str | None) -> str:
        if cluster_id is None:
            if not mesh.cluster_ids:
                raise Conflict(f"mesh {mesh.name} has no cluster")
            return mesh.cluster_ids[0]
        if cluster_id not in mesh.cluster_ids:
            raise NotFound(f"clusterId: {shown(cluster_id)} is not a cluster of mesh {mesh.name}")
        return cluster_id

    def _visible(
        self, uow: UnitOfWork, caller: Caller, project_id: str, mesh_id: str, action: actions.Action, ip: str
    ) -> Mesh:
        """The live mesh of the project, if the caller may act on it (404 hides the others)."""
        mesh = uow.meshes.get(mesh_id) if len(mesh_id) <= 64 and "\x00" not in mesh_id else None
        if mesh is None or mesh.project_id != project_id or not mesh.live:
            raise NotFound(f"mesh {shown(mesh_id)} not found")
        self.identity.authorize(caller, action, project_id, mesh_facts(mesh), ip)
        return mesh


def _revisions(mesh: Mesh, task: UpgradeTask | None) -> list[str]:
    """The revisions whose injection counts as the mesh's: its version's, and during an upgrade
    the target's (where migrated namespaces point)."""
    found = [revision_of(mesh.version)]
    if task is not None and task.active:
        found.append(revision_of(task.target_version))
    return found


def _view(facts: ClusterFacts, revisions: Sequence[str], *, restart: bool) -> SidecarInjection:
    on = {ns.name: is_injected(ns, revisions) for ns in facts.namespaces}
    return SidecarInjection(
        cluster_id=facts.cluster_id,
        injected=tuple(name for name, injected in on.items() if injected),
        namespaces=on,
        restart=restart,
    )
