"""Drive upgrade tasks through the services and a deterministic engine (no HTTP, no sleeping)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from meshup.app import build_runtime, create_app
from meshup.clock import FixedClock
from meshup.config import Settings
from meshup.drivers.simulated import SimulatedDrivers
from meshup.drivers.simulated_timing import SimTiming
from meshup.http.runtime import Runtime
from meshup.iam.service import Caller
from meshup.iam.tokens import TokenClaims
from meshup.jobs.model import assemble
from meshup.meshes.model import Mesh
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import identity as identity_store
from meshup.store import jobs as job_store
from meshup.upgrades.schemas import parse_change, parse_create, render_task
from tests.support.asgi import run_served

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
PROJECT = "0123456789abcdef0123456789abcdef"
MESH = "9b2f4c1e-0000-4000-8000-000000000001"


def two_cluster_seed(faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "accounts": [
            {
                "name": "acme",
                "projects": [{"name": "cn-north-4", "id": PROJECT}],
                "users": [{"name": "root", "root": True}],
                "clusters": [
                    {
                        "id": "c1",
                        "kubernetesVersion": "1.28",
                        "nodes": {"count": 6, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
                        "namespaces": [
                            {
                                "name": "shop",
                                "labels": {"istio-injection": "enabled"},
                                "workloads": [
                                    {"name": "cart", "replicas": 3},
                                    {"name": "web", "replicas": 2},
                                    {"name": "api", "replicas": 1},
                                ],
                            },
                            {
                                "name": "payments",
                                "labels": {"istio-injection": "enabled"},
                                "workloads": [{"name": "ledger", "replicas": 2}],
                            },
                            {"name": "tools", "labels": {}, "workloads": [{"name": "debug", "replicas": 1}]},
                        ],
                        "faults": faults or [],
                    },
                    {
                        "id": "c2",
                        "kubernetesVersion": "1.27",
                        "nodes": {"count": 4, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
                        "namespaces": [
                            {
                                "name": "shop",
                                "labels": {"istio-injection": "enabled"},
                                "workloads": [{"name": "cart", "replicas": 2}],
                            }
                        ],
                    },
                ],
                "meshes": [
                    {
                        "name": "mesh-prod",
                        "id": MESH,
                        "project": "cn-north-4",
                        "version": "1.15.7-r1",
                        "clusters": ["c1", "c2"],
                    }
                ],
            }
        ]
    }


@dataclass
class Flow:
    rt: Runtime
    clock: FixedClock
    caller: Caller
    app: Any  # the served application, for reads that only HTTP offers
    token: str  # the root user's, scoped to PROJECT

    @classmethod
    def start(cls, database_url: str, seed: dict[str, Any]) -> Flow:
        clock = FixedClock(NOW)
        settings = Settings(database_url=database_url, master_key="k" * 40, workers=0, sim_speed=0)
        rt = build_runtime(settings, clock=clock)
        with rt.db.write() as conn:
            apply_seed(conn, parse_seed(seed), rt.identity.master_key, NOW)
        with rt.db.read() as conn:
            account = identity_store.find_account(conn, name="acme")
            assert account is not None
            user = identity_store.find_user(conn, account.id, "root")
            assert user is not None
            principal = rt.identity.principal(conn, user.user.id, "aksk")
        assert principal is not None
        claims = TokenClaims(
            user_id=user.user.id,
            project_id=PROJECT,
            domain_scoped=False,
            password_version=user.user.password_version,
            issued_at=NOW,
            expires_at=NOW + timedelta(days=3650),
        )
        token = rt.identity.tokens.issue(claims)
        return cls(rt, clock, Caller(principal, None), create_app(settings, runtime=rt), token)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        task = self.rt.upgrades.create(self.caller, PROJECT, parse_create(body), "127.0.0.1")
        return render_task(task)

    def put(self, task_id: str, step: str, namespaces: list[str] | None = None) -> dict[str, Any]:
        current: dict[str, Any] = {"step": step}
        if namespaces is not None:
            current["namespaces"] = namespaces
        body = {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": current}}
        task = self.rt.upgrades.update(self.caller, PROJECT, task_id, parse_change(body), "127.0.0.1")
        return render_task(task)

    def get(self, task_id: str) -> dict[str, Any]:
        return render_task(self.rt.upgrades.get(self.caller, PROJECT, task_id, "127.0.0.1"))

    def delete(self, task_id: str) -> dict[str, Any]:
        return render_task(self.rt.upgrades.delete(self.caller, PROJECT, task_id, "127.0.0.1"))

    def job(self, job_id: str) -> dict[str, Any]:
        """The mesh job as a client reads it: through the served GET."""

        async def get(client: httpx.AsyncClient) -> httpx.Response:
            return await client.get(f"/v1/{PROJECT}/mesh-job/{job_id}", headers={"X-Auth-Token": self.token})

        response = run_served(self.app, get)
        assert response.status_code == 200, response.text
        return dict(orjson.loads(response.content))

    def run(self) -> int:
        return self.rt.engine.run_until_idle()

    def mesh(self) -> Mesh:
        with self.rt.upgrades.uow(read_only=True) as uow:
            mesh = uow.meshes.get(MESH)
        assert mesh is not None
        return mesh

    def cluster(self, cluster_id: str) -> dict[str, Any]:
        drivers = SimulatedDrivers(self.rt.db, self.clock, SimTiming(speed=0))
        return drivers.for_account(self.mesh().account_id).document(cluster_id)

    def tree_types(self, job_id: str) -> list[str]:
        with self.rt.db.read() as conn:
            nodes = assemble(job_store.load_tree(conn, job_id))
        return [node.type for node in sorted(nodes.values(), key=lambda n: (n.parent_id or "", n.position))]


def new_task(target: str = "1.18.7-r5") -> dict[str, Any]:
    return {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "to-1-18"},
        "spec": {
            "meshId": MESH,
            "upgradeStrategy": "Canary",
            "targetVersion": target,
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
