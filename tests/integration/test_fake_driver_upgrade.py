"""A whole mesh life through the real services and engine, on the in-memory fake driver.

The runtime is wired by ``build_runtime`` with ``drivers=`` the fake: nothing here uses the
simulated driver or a cluster document, so this is what any ClusterDriver must support.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from meshup.app import build_runtime, create_app
from meshup.clock import FixedClock
from meshup.config import Settings
from meshup.drivers.base import INJECTION_LABEL, REVISION_LABEL
from meshup.http.runtime import Runtime
from meshup.iam.service import Caller
from meshup.iam.tokens import TokenClaims
from meshup.meshes.schemas import parse_create as parse_mesh
from meshup.meshes.schemas import render_mesh
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import identity as identity_store
from meshup.store import tables as t
from meshup.upgrades.schemas import parse_change, parse_create, render_task
from tests.support.asgi import run_served
from tests.support.databases import database_url
from tests.support.fake_driver import FakeDriver, FakeDrivers, FakeNamespace, FakeWorkload

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
PROJECT = "0123456789abcdef0123456789abcdef"
IP = "127.0.0.1"
V1, V2, V3 = "1.15.7-r1", "1.18.7-r1", "1.18.7-r5"
R1, R2, R3 = "1-15-7-r1", "1-18-7-r1", "1-18-7-r5"


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as value:
        yield value


class Harness:
    def __init__(self, url: str) -> None:
        self.clock = FixedClock(NOW)
        # Every operation answers "not yet" once and readiness takes two checks: Wait paths run.
        self.drivers = FakeDrivers(lambda: FakeDriver(checks_until_done=1, ready_after=2))
        settings = Settings(database_url=url, master_key="k" * 40, workers=0, sim_speed=0)
        self.rt: Runtime = build_runtime(settings, clock=self.clock, drivers=self.drivers)
        seed = {
            "accounts": [
                {
                    "name": "acme",
                    "projects": [{"name": "cn-north-4", "id": PROJECT}],
                    "users": [{"name": "root", "root": True}],
                }
            ]
        }
        with self.rt.db.write() as conn:
            apply_seed(conn, parse_seed(seed), self.rt.identity.master_key, NOW)
        with self.rt.db.read() as conn:
            account = identity_store.find_account(conn, name="acme")
            assert account is not None
            user = identity_store.find_user(conn, account.id, "root")
            assert user is not None
            principal = self.rt.identity.principal(conn, user.user.id, "aksk")
        assert principal is not None
        self.caller = Caller(principal, None)
        self.app = create_app(settings, runtime=self.rt)
        self.token = self.rt.identity.tokens.issue(
            TokenClaims(
                user_id=user.user.id,
                project_id=PROJECT,
                domain_scoped=False,
                password_version=user.user.password_version,
                issued_at=NOW,
                expires_at=NOW + timedelta(days=1),
            )
        )
        self.driver = self.drivers.for_account(account.id)

    def run(self) -> int:
        return self.rt.engine.run_until_idle()

    def create_mesh(self, name: str, version: str, clusters: list[str]) -> dict[str, Any]:
        body = {
            "kind": "Mesh",
            "apiVersion": "v1",
            "metadata": {"name": name},
            "spec": {
                "type": "InCluster",
                "version": version,
                "extendParams": {"clusters": [{"clusterID": c} for c in clusters]},
            },
        }
        return render_mesh(self.rt.meshes.create(self.caller, PROJECT, parse_mesh(body), IP))

    def mesh(self, mesh_id: str) -> dict[str, Any]:
        return render_mesh(self.rt.meshes.show(self.caller, PROJECT, mesh_id, IP))

    def create_task(self, mesh_id: str, target: str) -> dict[str, Any]:
        body = {
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": f"to-{target.replace('.', '-')}"},
            "spec": {
                "meshId": mesh_id,
                "upgradeStrategy": "Canary",
                "targetVersion": target,
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        }
        return render_task(self.rt.upgrades.create(self.caller, PROJECT, parse_create(body), IP))

    def step(self, task_id: str, step: str, namespaces: list[str] | None = None) -> dict[str, Any]:
        current: dict[str, Any] = {"step": step}
        if namespaces is not None:
            current["namespaces"] = namespaces
        body = {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}
        return render_task(self.rt.upgrades.update(self.caller, PROJECT, task_id, parse_change(body), IP))

    def task(self, task_id: str) -> dict[str, Any]:
        return render_task(self.rt.upgrades.get(self.caller, PROJECT, task_id, IP))

    def job(self, job_id: str) -> dict[str, Any]:
        """The mesh job as a client reads it: through the served GET, with a root token."""

        async def get(client: httpx.AsyncClient) -> httpx.Response:
            return await client.get(f"/v1/{PROJECT}/mesh-job/{job_id}", headers={"X-Auth-Token": self.token})

        response = run_served(self.app, get)
        assert response.status_code == 200, response.text
        return dict(orjson.loads(response.content))

    def advance(self, task_id: str, step: str, namespaces: list[str] | None = None) -> dict[str, Any]:
        """Start a step, run the engine to the end, and check its job succeeded."""
        started = self.step(task_id, step, namespaces)
        assert started["status"]["phase"] == "Running" and started["status"]["step"] == step
        self.run()
        job = self.job(started["status"]["jobId"])
        assert job["status"]["phase"] == "Success", job
        return self.task(task_id)

    def operations(self, name: str) -> list[tuple[str, str | None]]:
        """(cluster, namespace) of each first request of a job for an operation."""
        seen: dict[str, tuple[str, str | None]] = {}
        for operation, cluster, asker in self.driver.calls:
            if operation == name:
                seen.setdefault(asker.job_id + cluster, (cluster, asker.namespace))
        return list(seen.values())


def test_a_mesh_is_created_upgraded_and_a_second_upgrade_rolled_back(url: str) -> None:
    h = Harness(url)
    # The clusters as the fake sees them: c1 with two injected namespaces and one without.
    c1 = h.driver.cluster("c1")
    c1.namespaces = {
        "shop": FakeNamespace(
            {INJECTION_LABEL: "enabled"}, {"cart": FakeWorkload(3), "web": FakeWorkload(2)}
        ),
        "pay": FakeNamespace({INJECTION_LABEL: "enabled"}, {"api": FakeWorkload(1)}),
        "tools": FakeNamespace({}, {"debug": FakeWorkload(1)}),
    }
    c2 = h.driver.cluster("c2")

    mesh = h.create_mesh("mesh-fake", V1, ["c1", "c2"])
    mesh_id = mesh["metadata"]["uid"]
    assert mesh["status"]["phase"] == "Creating"
    h.run()
    assert h.mesh(mesh_id)["status"]["phase"] == "Running"
    assert h.operations("ensure_control_plane") == [("c1", None), ("c2", None)]
    for cluster in (c1, c2):
        assert cluster.revisions == {R1: V1} and cluster.default_revision == R1
        assert [gw.revision for gw in cluster.gateways.values()] == [R1]
    # Workloads get the mesh's sidecars when they restart; make them run it, as a cluster would.
    for namespace in ("shop", "pay"):
        for workload in c1.namespaces[namespace].workloads.values():
            workload.sidecar = V1
    for workload in c2.namespaces["default"].workloads.values():
        workload.sidecar = V1

    # First upgrade, to V2, all the way.
    task = h.create_task(mesh_id, V2)
    task_id = task["metadata"]["uid"]
    assert task["status"]["pendingNamespaces"] == ["shop", "pay", "default"]
    h.run()
    assert h.job(task["status"]["jobId"])["status"]["phase"] == "Success"
    assert h.task(task_id)["status"]["phase"] == "Waiting"
    inspected = {cluster for _, cluster, asker in h.driver.calls if asker.job_type == "CheckResources"}
    assert inspected == {"c1", "c2"}

    task = h.advance(task_id, "ControlPlaneUpgrade")
    assert h.mesh(mesh_id)["status"]["phase"] == "Running"
    assert c1.revisions == {R1: V1, R2: V2} and c1.default_revision == R1
    task = h.advance(task_id, "DataPlaneUpgrade", ["shop"])
    assert task["status"]["migratedNamespaces"] == ["shop"]
    assert c1.namespaces["shop"].labels == {REVISION_LABEL: R2}
    assert {w.sidecar for w in c1.namespaces["shop"].workloads.values()} == {V2}
    assert {w.sidecar for w in c1.namespaces["pay"].workloads.values()} == {V1}
    task = h.advance(task_id, "DataPlaneUpgrade")
    assert task["status"]["pendingNamespaces"] == []
    task = h.advance(task_id, "Complete")
    assert task["status"]["phase"] == "Completed"
    shown = h.mesh(mesh_id)
    assert (shown["status"]["phase"], shown["spec"]["version"]) == ("Running", V2)
    for cluster in (c1, c2):
        assert cluster.revisions == {R2: V2} and cluster.default_revision == R2
        assert [gw.revision for gw in cluster.gateways.values()] == [R2]
    assert c1.namespaces["tools"].labels == {} and c1.namespaces["tools"].workloads["debug"].sidecar is None
    restarts = h.operations("ensure_sidecars")
    assert sorted(restarts) == [("c1", "pay"), ("c1", "shop"), ("c2", "default")]  # one batch each

    # Second upgrade, to V3, rolled back after part of the data plane moved.
    before = {
        name: (dict(ns.labels), {w: s.sidecar for w, s in ns.workloads.items()})
        for name, ns in c1.namespaces.items()
    }
    second = h.create_task(mesh_id, V3)
    second_id = second["metadata"]["uid"]
    h.run()
    h.advance(second_id, "ControlPlaneUpgrade")
    h.advance(second_id, "DataPlaneUpgrade", ["pay"])
    assert c1.namespaces["pay"].labels == {REVISION_LABEL: R3}
    started = h.step(second_id, "Rollback")
    assert h.mesh(mesh_id)["status"]["phase"] == "RollingBack"
    h.run()
    assert h.job(started["status"]["jobId"])["status"]["phase"] == "Success"
    assert h.task(second_id)["status"]["phase"] == "RolledBack"
    shown = h.mesh(mesh_id)
    assert (shown["status"]["phase"], shown["spec"]["version"]) == ("Running", V2)
    after = {
        name: (dict(ns.labels), {w: s.sidecar for w, s in ns.workloads.items()})
        for name, ns in c1.namespaces.items()
    }
    assert after == before
    for cluster in (c1, c2):
        assert cluster.revisions == {R2: V2} and cluster.default_revision == R2
        assert [gw.revision for gw in cluster.gateways.values()] == [R2]
    assert h.operations("ensure_namespace_reverted") == [("c1", None)]

    # Every step ran through the fake, each request named by its job, and nothing else was touched.
    assert set(h.drivers.accounts) == {h.caller.principal.account.id}
    with h.rt.db.read() as conn:
        assert conn.execute(t.clusters.select()).first() is None


def test_the_fake_sets_sidecar_injection_like_the_simulated_driver() -> None:
    from meshup.drivers.base import Requester
    from tests.support.fake_driver import FakeDriver, FakeNamespace, FakeWorkload, healthy_cluster

    driver = FakeDriver()
    cluster = driver.clusters.setdefault("c1", healthy_cluster())
    cluster.revisions["1-15-7-r1"] = "1.15.7-r1"
    cluster.namespaces["tools"] = FakeNamespace({}, {"debug": FakeWorkload()})
    asker = Requester("UpdateSidecarInjection", "req-1", None)
    driver.ensure_namespace_injection("c1", "tools", "1-15-7-r1", restart=True, asker=asker)
    driver.ensure_namespace_injection("c1", "default", None, restart=False, asker=asker)
    assert cluster.namespaces["tools"].labels == {"istio.io/rev": "1-15-7-r1"}
    assert cluster.namespaces["tools"].workloads["debug"].sidecar == "1.15.7-r1"
    assert cluster.namespaces["default"].labels == {}
    assert [call[0] for call in driver.calls] == ["ensure_namespace_injection"] * 2
