"""The simulated driver on SQLite and PostgreSQL, with the real step functions on top.

``Sim`` plays the engine's part: it runs a step as one job (a fresh job id unless told), and on
``Wait`` advances a fixed clock by the requested seconds and runs it again, until the step is Done
or Failed. The driver opens its own transactions, so each test gets its own account (clusters are
per account) in a database shared by the module.

Covered here: the cluster documents, simulated durations (``SimTiming``, speed 0 = instant), fault
rules (plain, namespace-scoped, ``neverReady``, workload), idempotency per job (a step resumed or
re-run after a crash gets the same answer), reads that never write, and row locks.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from meshup.clock import FixedClock
from meshup.drivers.base import Refused, Requester
from meshup.drivers.simulated import RETENTION, SimulatedDriver, SimulatedDrivers
from meshup.drivers.simulated_timing import SimTiming
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.iam.secrets import MasterKey
from meshup.seed.apply import apply_seed
from meshup.seed.schema import parse_seed
from meshup.store import accounts as account_store
from meshup.store import meshes as mesh_store
from meshup.store import tables as t
from meshup.store.db import Database
from meshup.upgrades.steps import STEPS
from tests.conftest import backends
from tests.support.databases import database_url

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
SRC, TGT = "1-15-7-r1", "1-18-7-r5"
REAL = SimTiming()  # speed 1: control plane ready after 6s, batches 2s, checks 0.3s, gateways 1s
INSTANT = SimTiming(speed=0)


@pytest.fixture(scope="module", params=backends())
def shared_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    with database_url(str(request.param), tmp_path_factory.mktemp("simulated")) as url:
        database = Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.dispose()


def new_account(db: Database) -> str:
    account_id = uuid.uuid4().hex
    with db.write() as conn:
        account_store.upsert_account(
            conn, name=f"acme-{account_id[:8]}", account_id=account_id, enabled=True, now=NOW
        )
    return account_id


def cluster_document() -> dict[str, Any]:
    return {
        "kubernetesVersion": "1.28",
        "status": "Available",
        "nodes": {"count": 3, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled", "team": "shop"},
                "workloads": [
                    {"name": "cart", "replicas": 3, "sidecarVersion": None},
                    {"name": "web", "replicas": 2, "sidecarVersion": None},
                ],
            },
            {
                "name": "pay",
                "labels": {"istio.io/rev": SRC},
                "workloads": [{"name": "api", "replicas": 2, "sidecarVersion": None}],
            },
            {
                "name": "legacy",
                "labels": {"istio-injection": "disabled"},
                "workloads": [{"name": "batch", "replicas": 1, "sidecarVersion": None}],
            },
            {
                "name": "plain",
                "labels": {},
                "workloads": [{"name": "tool", "replicas": 1, "sidecarVersion": None}],
            },
        ],
    }


def common() -> dict[str, Any]:
    return {
        "cluster": "c1",
        "meshId": "mesh-1",
        "sourceVersion": SOURCE,
        "targetVersion": TARGET,
        "sourceRevision": SRC,
        "targetRevision": TGT,
    }


@dataclass
class Sim:
    db: Database
    account: str
    timing: SimTiming = REAL
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    waits: list[Wait] = field(default_factory=list)

    def driver(self) -> SimulatedDriver:
        return SimulatedDrivers(self.db, self.clock, self.timing).for_account(self.account)

    def put(
        self, state: dict[str, Any], faults: list[dict[str, Any]] | None = None, cluster: str = "c1"
    ) -> None:
        with self.db.write() as conn:
            mesh_store.put_cluster(
                conn,
                account_id=self.account,
                cluster_id=cluster,
                name=cluster,
                state=state,
                faults=[{"fired": 0, **fault} for fault in faults or []],
                now=self.clock.now(),
            )

    def mesh(self, faults: list[dict[str, Any]] | None = None, **changes: Any) -> None:
        """c1: the cluster document above, adopted by a 1.15.7-r1 mesh."""
        self.put({**cluster_document(), **changes}, faults)
        self.driver().adopt("c1", SOURCE)

    def doc(self, cluster: str = "c1") -> dict[str, Any]:
        return self.driver().document(cluster)

    def fired(self, index: int = 0) -> int:
        return int(self.driver().faults("c1")[index]["fired"])

    def once(self, job_type: str, payload: dict[str, Any], job_id: str = "job-1") -> Outcome:
        ctx = StepContext(job_id, job_type, "cluster c1", dict(payload), self.clock.now())
        return STEPS[job_type](ctx, self.driver())

    def run(self, job_type: str, job_id: str | None = None, **extra: Any) -> Outcome:
        """Run a leaf to completion as the engine would (the clock follows the waits)."""
        job_id = job_id or str(uuid.uuid4())
        payload = {**common(), **extra}
        for _ in range(100):
            outcome = self.once(job_type, payload, job_id)
            if not isinstance(outcome, Wait):
                return outcome
            self.waits.append(outcome)
            payload.update(outcome.state)
            self.clock.advance(outcome.seconds)
        raise AssertionError(f"{job_type} never finished")

    def ok(self, job_type: str, **extra: Any) -> Done:
        outcome = self.run(job_type, **extra)
        assert isinstance(outcome, Done), outcome
        return outcome

    def fail(self, job_type: str, **extra: Any) -> str:
        outcome = self.run(job_type, **extra)
        assert isinstance(outcome, Fail), outcome
        return outcome.reason


@pytest.fixture
def sim(shared_db: Database) -> Sim:
    return Sim(shared_db, new_account(shared_db))


def labels(doc: dict[str, Any], namespace: str) -> dict[str, str]:
    return next(ns["labels"] for ns in doc["namespaces"] if ns["name"] == namespace)


def sidecars(doc: dict[str, Any], namespace: str) -> dict[str, str | None]:
    ns = next(ns for ns in doc["namespaces"] if ns["name"] == namespace)
    return {w["name"]: w["sidecarVersion"] for w in ns["workloads"]}


def cluster_ids(db: Database, account: str) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(select(t.clusters.c.id).where(t.clusters.c.account_id == account)).all()
    return sorted(str(row.id) for row in rows)


PRECHECKS = [
    "CheckUpgradePath",
    "CheckClusterStatus",
    "CheckClusterVersion",
    "CheckResources",
    "CheckDeprecatedCRDs",
    "CheckGatewayLabels",
    "CheckInjectionLabels",
]


def control_plane(sim: Sim) -> None:
    sim.ok("InstallControlPlane")
    sim.ok("WaitControlPlaneReady")
    sim.ok("InstallGateways")


def migrate(sim: Sim, namespace: str, batches: list[list[str]]) -> None:
    sim.ok("RelabelNamespace", namespace=namespace)
    for batch in batches:
        sim.ok("RestartWorkloads", namespace=namespace, workloads=batch, version=TARGET)
    sim.ok("VerifyProxies", namespace=namespace)


# ---------------------------------------------------------------- documents, reads, adoption


def test_unknown_clusters_read_healthy_without_writing_and_are_created_by_the_first_change(sim: Sim) -> None:
    facts = sim.driver().facts("fresh")
    assert facts.available and facts.kubernetes_version == "1.28"
    assert [ns.name for ns in facts.namespaces] == ["default"]
    assert cluster_ids(sim.db, sim.account) == []  # a read never writes
    asker = Requester("RelabelNamespace", "job-9", "default")
    assert sim.driver().ensure_namespace_revision("fresh", "default", TGT, asker).done
    assert cluster_ids(sim.db, sim.account) == ["fresh"]
    doc = sim.doc("fresh")
    assert doc["namespaces"][0]["labels"] == {"istio.io/rev": TGT}
    assert doc["kubernetesVersion"] == "1.28"


def test_facts_can_be_read_while_another_transaction_holds_the_write_lock(sim: Sim) -> None:
    """Services read facts inside their own write transaction; SQLite has one writer."""
    sim.mesh()
    with sim.db.write() as conn:
        conn.execute(t.accounts.update().where(t.accounts.c.id == sim.account).values(enabled=True))
        started = time.monotonic()
        assert sim.driver().facts("new").available
        assert sim.driver().facts("c1").default_revision == SRC
        assert time.monotonic() - started < 5
    assert "new" not in cluster_ids(sim.db, sim.account)


def test_adoption_makes_a_running_mesh_and_is_idempotent(sim: Sim) -> None:
    sim.mesh()
    doc = sim.doc()
    assert doc["controlPlane"] == {
        "revisions": {
            SRC: {
                "version": SOURCE,
                "installedAt": "2026-11-27T10:00:00.000000Z",
                "readyAt": "2026-11-27T10:00:00.000000Z",
                "neverReady": False,
            }
        },
        "defaultRevision": SRC,
    }
    assert doc["gateways"] == [
        {
            "name": f"istio-ingressgateway-{SRC}",
            "revision": SRC,
            "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": SRC},
        }
    ]
    assert sidecars(doc, "shop") == {"cart": SOURCE, "web": SOURCE}
    assert sidecars(doc, "pay") == {"api": SOURCE}
    assert sidecars(doc, "legacy") == {"batch": None}
    assert sidecars(doc, "plain") == {"tool": None}
    sim.clock.advance(3600)
    sim.driver().adopt("c1", SOURCE)
    assert sim.doc() == doc
    assert sim.driver().control_plane_ready("c1", SRC, Requester("WaitControlPlaneReady", "job-r")).done


def test_seeded_clusters_adopted_by_their_mesh(sim: Sim) -> None:
    seed = parse_seed(
        {
            "accounts": [
                {
                    "name": f"acme-{sim.account[:8]}",
                    "id": sim.account,
                    "projects": [{"name": "cn-north-4"}],
                    "clusters": [
                        {
                            "id": "c1",
                            "kubernetesVersion": "1.28",
                            "namespaces": [
                                {
                                    "name": "shop",
                                    "labels": {"istio-injection": "enabled"},
                                    "workloads": [{"name": "cart", "replicas": 3}],
                                }
                            ],
                            "faults": [{"jobType": "RelabelNamespace", "times": 1, "reason": "denied"}],
                        }
                    ],
                    "meshes": [
                        {"name": "mesh-prod", "project": "cn-north-4", "version": SOURCE, "clusters": ["c1"]}
                    ],
                }
            ]
        }
    )
    with sim.db.write() as conn:
        apply_seed(conn, seed, MasterKey(b"k" * 32), NOW)
    driver = sim.driver()
    adopted = driver.document("c1")
    driver.adopt("c1", SOURCE)
    assert driver.document("c1") == adopted
    assert adopted["controlPlane"]["defaultRevision"] == SRC
    assert adopted["namespaces"][0]["workloads"][0]["sidecarVersion"] == SOURCE
    assert sim.fail("RelabelNamespace", job_id="job-a", namespace="shop") == "denied"
    assert sim.fired() == 1  # committed by the driver's own transaction
    assert sim.fail("RelabelNamespace", job_id="job-a", namespace="shop") == "denied"  # the same job again
    assert sim.fired() == 1
    sim.ok("RelabelNamespace", job_id="job-b", namespace="shop")  # a new job: the fault is spent
    assert labels(sim.doc(), "shop") == {"istio.io/rev": TGT}


# ---------------------------------------------------------------- pre-checks


@pytest.mark.parametrize("job_type", PRECHECKS)
def test_prechecks_pass_on_a_healthy_cluster_and_take_check_time(sim: Sim, job_type: str) -> None:
    sim.mesh()
    assert sim.ok(job_type) == Done()
    assert [w.seconds for w in sim.waits] == [pytest.approx(0.3)]  # a check takes simulated time


@pytest.mark.parametrize(
    ("job_type", "changes", "reason"),
    [
        ("CheckClusterStatus", {"status": "Unavailable"}, "cluster c1 is Unavailable"),
        (
            "CheckClusterVersion",
            {"kubernetesVersion": "1.23"},
            "cluster c1: Kubernetes 1.23 is not supported by mesh line 1.18 "
            "(supported: 1.25, 1.27, 1.28, 1.29, 1.30, 1.31, 1.32, 1.34)",
        ),
        (
            "CheckResources",
            {"nodes": {"count": 2, "cpu": "2", "memory": "4Gi", "masterLabelled": 1}},
            "cluster c1: needs 0.6 CPU and 2176Mi free for istiod-1-18-7-r5 and 1 gateway, has 1.4 CPU "
            "and 1920Mi (2 nodes of 2 CPU and 4Gi, 1 labelled for the control plane)",
        ),
        (
            "CheckDeprecatedCRDs",
            {"crds": ["rules.config.istio.io"]},
            "cluster c1: CRD rules.config.istio.io is not served by mesh line 1.18 (removed in 1.8); "
            "delete it before upgrading",
        ),
        (
            "CheckGatewayLabels",
            {"gateways": [{"name": "edge", "revision": SRC, "labels": {"app": "edge"}}]},
            "cluster c1: gateway edge lacks label istio=ingressgateway needed by the mesh line 1.18 "
            "gateway selector",
        ),
    ],
)
def test_prechecks_fail_with_precise_reasons(
    sim: Sim, job_type: str, changes: dict[str, Any], reason: str
) -> None:
    sim.mesh(**changes)
    assert sim.fail(job_type) == reason


def test_injection_label_check_and_upgrade_path_via_steps(sim: Sim) -> None:
    doc = cluster_document()
    doc["namespaces"][1]["labels"]["istio-injection"] = "enabled"
    sim.put(doc)
    assert sim.fail("CheckInjectionLabels") == (
        "cluster c1 / namespace pay: has both istio-injection=enabled and istio.io/rev=1-15-7-r1; "
        "remove one of them"
    )
    assert sim.fail("CheckUpgradePath", targetVersion="1.15.5-r4") == (
        "1.15.5-r4 is not newer than the current version 1.15.7-r1"
    )
    mesh_level = {k: v for k, v in common().items() if k != "cluster"}
    assert isinstance(sim.once("CheckUpgradePath", mesh_level, "job-mesh"), Done)  # no cluster: no check time


# ---------------------------------------------------------------- control plane


def test_install_control_plane_then_wait_for_it(sim: Sim) -> None:
    sim.mesh()
    sim.ok("InstallControlPlane")
    entry = sim.doc()["controlPlane"]["revisions"][TGT]
    assert entry == {
        "version": TARGET,
        "installedAt": "2026-11-27T10:00:00.000000Z",
        "readyAt": "2026-11-27T10:00:06.000000Z",
        "neverReady": False,
    }
    assert sim.doc()["controlPlane"]["defaultRevision"] == SRC  # the canary is not the default yet
    sim.clock.advance(2)
    sim.ok("InstallControlPlane")  # a re-run keeps the readyAt it had
    assert sim.doc()["controlPlane"]["revisions"][TGT] == entry
    assert sim.ok("WaitControlPlaneReady") == Done({"revision": TGT})
    assert [w.seconds for w in sim.waits] == [pytest.approx(4.0)]
    assert sim.clock.now() == NOW + timedelta(seconds=6)


def test_waiting_for_a_revision_that_is_not_installed_fails(sim: Sim) -> None:
    sim.mesh()
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 is not installed"


def test_first_revision_on_a_bare_cluster_becomes_the_default(sim: Sim) -> None:
    sim.put(cluster_document())
    sim.ok("InstallControlPlane")
    assert sim.doc()["controlPlane"]["defaultRevision"] == TGT


def test_install_gateways_copies_the_source_gateways(sim: Sim) -> None:
    sim.mesh(
        gateways=[
            {"name": "edge-1-15-7-r1", "revision": SRC, "labels": {"istio": "ingressgateway", "x": "y"}}
        ]
    )
    assert sim.ok("InstallGateways") == Done({"gateways": [f"edge-{TGT}"]})
    assert sim.doc()["gateways"][-1] == {
        "name": f"edge-{TGT}",
        "revision": TGT,
        "labels": {"istio": "ingressgateway", "x": "y", "istio.io/rev": TGT},
    }
    assert [w.seconds for w in sim.waits] == [pytest.approx(1.0)]


def test_install_gateways_without_a_source_installs_the_default_ingress(sim: Sim) -> None:
    sim.put(cluster_document())
    sim.ok("InstallGateways", sourceRevision=None, sourceVersion=None)
    assert [g["name"] for g in sim.doc()["gateways"]] == [f"istio-ingressgateway-{TGT}"]


# ---------------------------------------------------------------- data plane


def test_relabel_namespace(sim: Sim) -> None:
    sim.mesh()
    sim.ok("RelabelNamespace", namespace="shop")
    ns = next(ns for ns in sim.doc()["namespaces"] if ns["name"] == "shop")
    assert ns["labels"] == {"team": "shop", "istio.io/rev": TGT}
    assert ns["previousInjection"] == {"istio-injection": "enabled"}
    assert sim.fail("RelabelNamespace", namespace="nope") == "cluster c1: namespace nope not found"


def test_restart_workloads_waits_a_batch_then_rolls_the_sidecars(sim: Sim) -> None:
    sim.mesh()
    payload = {**common(), "namespace": "shop", "workloads": ["cart"], "version": TARGET}
    first = sim.once("RestartWorkloads", payload, "job-r")
    assert first == Wait(pytest.approx(2.0))  # type: ignore[arg-type]
    assert sidecars(sim.doc(), "shop") == {"cart": SOURCE, "web": SOURCE}  # nothing yet
    sim.clock.advance(1.5)
    assert sim.once("RestartWorkloads", payload, "job-r") == Wait(pytest.approx(0.5))  # type: ignore[arg-type]
    sim.clock.advance(0.5)
    assert sim.once("RestartWorkloads", payload, "job-r") == Done({"workloads": ["cart"], "version": TARGET})
    assert sidecars(sim.doc(), "shop") == {"cart": TARGET, "web": SOURCE}


def test_restart_workloads_with_speed_zero_completes_in_one_run(sim: Sim) -> None:
    sim.timing = INSTANT
    sim.mesh()
    outcome = sim.once(
        "RestartWorkloads", {**common(), "namespace": "shop", "workloads": ["cart", "web"], "version": TARGET}
    )
    assert outcome == Done({"workloads": ["cart", "web"], "version": TARGET})
    assert sidecars(sim.doc(), "shop") == {"cart": TARGET, "web": TARGET}


def test_restart_of_an_unknown_workload_fails(sim: Sim) -> None:
    sim.mesh()
    reason = sim.fail("RestartWorkloads", namespace="shop", workloads=["cart", "ghost"], version=TARGET)
    assert reason == "cluster c1 / namespace shop: workload ghost not found"
    assert sidecars(sim.doc(), "shop") == {"cart": SOURCE, "web": SOURCE}


def test_verify_proxies(sim: Sim) -> None:
    sim.mesh()
    sim.ok("RestartWorkloads", namespace="shop", workloads=["web"], version=TARGET)
    assert sim.fail("VerifyProxies", namespace="shop") == (
        "cluster c1 / namespace shop: workload cart runs proxy 1.15.7-r1, expected 1.18.7-r5"
    )
    assert sim.fail("VerifyProxies", namespace="legacy") == (
        "cluster c1 / namespace legacy: workload batch runs no proxy, expected 1.18.7-r5"
    )
    sim.ok("RestartWorkloads", namespace="shop", workloads=["cart"], version=TARGET)
    assert sim.ok("VerifyProxies", namespace="shop") == Done({"version": TARGET, "workloads": 2})


# ---------------------------------------------------------------- complete


def test_uninstall_refuses_while_a_namespace_points_to_the_revision(sim: Sim) -> None:
    sim.mesh()
    assert sim.fail("UninstallControlPlane", revision=SRC) == (
        "cluster c1: cannot uninstall istiod-1-15-7-r1: namespace pay still uses it (istio.io/rev=1-15-7-r1)"
    )
    assert SRC in sim.doc()["controlPlane"]["revisions"]


def test_uninstall_and_remove_gateways_need_an_explicit_revision(sim: Sim) -> None:
    sim.mesh()
    assert sim.fail("UninstallControlPlane") == "UninstallControlPlane: job payload has no 'revision'"
    assert sim.fail("RemoveGateways") == "RemoveGateways: job payload has no 'revision'"


def test_switch_default_revision_needs_the_revision_installed(sim: Sim) -> None:
    sim.mesh()
    assert sim.fail("SwitchDefaultRevision") == "cluster c1: revision 1-18-7-r5 is not installed"
    sim.ok("InstallControlPlane")
    sim.ok("SwitchDefaultRevision")
    assert sim.doc()["controlPlane"]["defaultRevision"] == TGT


def test_remove_gateways_removes_only_that_revision(sim: Sim) -> None:
    sim.mesh()
    sim.ok("InstallGateways")
    assert sim.ok("RemoveGateways", revision=SRC) == Done({"removed": [f"istio-ingressgateway-{SRC}"]})
    assert [g["revision"] for g in sim.doc()["gateways"]] == [TGT]


# ---------------------------------------------------------------- idempotency


def _prepare(sim: Sim, job_type: str) -> dict[str, Any]:
    """Bring c1 to where ``job_type`` has something to do; return its extra payload."""
    sim.mesh()
    if job_type in ("InstallControlPlane", "InstallGateways"):
        return {}
    control_plane(sim)
    if job_type == "RelabelNamespace":
        return {"namespace": "shop"}
    sim.ok("RelabelNamespace", namespace="shop")
    sim.ok("RelabelNamespace", namespace="pay")
    if job_type == "RestartWorkloads":
        return {"namespace": "shop", "workloads": ["cart", "web"], "version": TARGET}
    if job_type in ("RevertNamespaces", "RestoreGateways"):
        return {"namespaces": ["shop", "pay"]}
    if job_type == "UninstallControlPlane":
        sim.ok("RevertNamespaces", namespaces=["shop", "pay"])
        return {"revision": TGT}
    return {"revision": SRC}  # SwitchDefaultRevision, RemoveGateways


MUTATING = [
    "InstallControlPlane",
    "InstallGateways",
    "RelabelNamespace",
    "RestartWorkloads",
    "SwitchDefaultRevision",
    "UninstallControlPlane",
    "RemoveGateways",
    "RevertNamespaces",
    "RestoreGateways",
]


@pytest.mark.parametrize("job_type", MUTATING)
def test_mutating_steps_are_idempotent(sim: Sim, job_type: str) -> None:
    extra = _prepare(sim, job_type)
    before = sim.doc()
    first = sim.run(job_type, job_id="job-once", **extra)
    assert isinstance(first, Done), first
    once = sim.doc()
    assert once != before, f"{job_type} changed nothing"
    sim.clock.advance(300)
    sim.ok(job_type, **extra)  # a new job asking for the same converges
    assert sim.doc() == once
    # The same job again (its outcome was lost in a crash): the same answer, nothing changes.
    assert sim.run(job_type, job_id="job-once", **extra) == first
    assert sim.doc() == once


@pytest.mark.parametrize("job_type", [*MUTATING, "WaitControlPlaneReady", "VerifyProxies"])
def test_an_unavailable_cluster_fails_every_cluster_step(sim: Sim, job_type: str) -> None:
    extra = _prepare(sim, job_type)
    if job_type == "VerifyProxies":
        extra = {"namespace": "shop"}
    doc = sim.doc()
    doc["status"] = "Unavailable"
    sim.put(doc)
    sim.waits.clear()
    assert sim.fail(job_type, **extra) == "cluster c1 is Unavailable"
    assert sim.doc() == doc
    assert sim.waits == []


def test_a_step_resumed_after_a_crash_keeps_its_start_time(sim: Sim) -> None:
    """A batch restart that began before a crash is due when it was due, not a full batch later."""
    sim.mesh()
    payload = {**common(), "namespace": "shop", "workloads": ["cart"], "version": TARGET}
    assert sim.once("RestartWorkloads", payload, "job-c") == Wait(pytest.approx(2.0))  # type: ignore[arg-type]
    sim.clock.advance(30)  # the worker died; the lease expired; another worker runs the job
    assert sim.once("RestartWorkloads", payload, "job-c") == Done({"workloads": ["cart"], "version": TARGET})
    record = sim.driver().operations("c1")["job-c"]
    assert record["jobType"] == "RestartWorkloads" and record["refused"] is None
    assert record["ops"][f"restart/shop/cart/{TARGET}"]["done"] is True


def test_removed_gateways_are_reported_the_same_when_a_job_runs_again(sim: Sim) -> None:
    sim.mesh()
    names = [f"istio-ingressgateway-{SRC}"]
    assert sim.run("RemoveGateways", job_id="job-g", revision=SRC) == Done({"removed": names})
    assert sim.run("RemoveGateways", job_id="job-g", revision=SRC) == Done({"removed": names})
    assert sim.run("RemoveGateways", revision=SRC) == Done({"removed": []})  # another job: nothing left


def test_records_of_old_jobs_are_dropped(sim: Sim) -> None:
    sim.mesh()
    sim.ok("RelabelNamespace", job_id="job-old", namespace="shop")
    sim.clock.advance(RETENTION.total_seconds() + 1)
    sim.ok("RelabelNamespace", job_id="job-new", namespace="pay")
    assert set(sim.driver().operations("c1")) == {"job-new"}


# ---------------------------------------------------------------- faults


def test_a_fault_with_times_fires_that_often_then_the_step_succeeds(sim: Sim) -> None:
    sim.mesh([{"jobType": "InstallControlPlane", "times": 1, "reason": "quota exceeded"}])
    assert sim.fail("InstallControlPlane") == "quota exceeded"
    assert TGT not in sim.doc()["controlPlane"]["revisions"]
    assert sim.fired() == 1
    sim.ok("InstallControlPlane")
    assert TGT in sim.doc()["controlPlane"]["revisions"]
    assert sim.fired() == 1


def test_a_fault_without_times_fires_always(sim: Sim) -> None:
    sim.mesh([{"jobType": "CheckResources", "times": None, "reason": "metrics server down"}])
    sim.waits.clear()
    for _ in range(3):
        assert sim.fail("CheckResources") == "metrics server down"
    assert sim.waits == []  # before doing anything: no check time
    assert sim.fired() == 3
    sim.ok("CheckClusterStatus")  # other step types are not affected


def test_a_fault_is_decided_once_per_job(sim: Sim) -> None:
    """A job resumed after a Wait (or re-run after a crash) is not a new firing; a fault added
    while a job is under way does not hit it."""
    sim.mesh()
    payload = {**common(), "namespace": "shop", "workloads": ["cart"], "version": TARGET}
    assert isinstance(sim.once("RestartWorkloads", payload, "job-f"), Wait)
    doc = sim.doc()
    sim.put(doc, [{"jobType": "RestartWorkloads", "times": 2, "reason": "boom"}])
    sim.clock.advance(2)
    assert isinstance(sim.once("RestartWorkloads", payload, "job-f"), Done)  # a resumed run
    assert sim.fired() == 0
    assert sim.run("RestartWorkloads", job_id="job-g", **payload) == Fail("boom")  # a new job
    assert sim.run("RestartWorkloads", job_id="job-g", **payload) == Fail("boom")  # ... run again
    assert sim.fired() == 1


def test_a_namespace_scoped_fault(sim: Sim) -> None:
    sim.mesh([{"jobType": "RelabelNamespace", "times": None, "reason": "webhook denied", "namespace": "pay"}])
    sim.ok("RelabelNamespace", namespace="shop")
    assert sim.fail("RelabelNamespace", namespace="pay") == "webhook denied"


def test_a_never_ready_revision_times_out(sim: Sim) -> None:
    sim.mesh(
        [{"jobType": "WaitControlPlaneReady", "times": None, "reason": "image pull", "neverReady": True}]
    )
    sim.ok("InstallControlPlane")
    assert sim.doc()["controlPlane"]["revisions"][TGT]["neverReady"] is True
    # timeout = 6s expected x controlPlaneReadyTimeoutFactor 5
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 30s"
    assert [w.seconds for w in sim.waits] == [pytest.approx(30.0)]
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 30s"  # retry
    assert sim.fired() == 1  # consumed by the one installation


def test_a_never_ready_revision_with_speed_zero_fails_at_once(sim: Sim) -> None:
    sim.timing = INSTANT
    sim.mesh([{"jobType": "WaitControlPlaneReady", "times": 1, "reason": "x", "neverReady": True}])
    sim.ok("InstallControlPlane")
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 0s"
    assert sim.waits == []
    # times: 1 — after the rollback uninstalls the stuck canary, a new installation gets ready
    sim.ok("UninstallControlPlane", revision=TGT)
    sim.ok("InstallControlPlane")
    sim.ok("WaitControlPlaneReady")


def test_a_never_ready_fault_can_name_its_revision(sim: Sim) -> None:
    sim.mesh(
        [
            {
                "jobType": "WaitControlPlaneReady",
                "times": None,
                "reason": "x",
                "neverReady": True,
                "revision": "9-9",
            }
        ]
    )
    sim.ok("InstallControlPlane")
    sim.ok("WaitControlPlaneReady")
    assert sim.fired() == 0


def test_a_plain_wait_fault_fails_the_wait_step(sim: Sim) -> None:
    sim.mesh([{"jobType": "WaitControlPlaneReady", "times": 1, "reason": "probe failed"}])
    sim.ok("InstallControlPlane")
    assert sim.fail("WaitControlPlaneReady") == "probe failed"
    assert sim.ok("WaitControlPlaneReady") == Done({"revision": TGT})


def test_a_workload_that_never_gets_ready_fails_its_batch(sim: Sim) -> None:
    sim.mesh([{"jobType": "RestartWorkloads", "times": 1, "reason": "CrashLoopBackOff", "workload": "web"}])
    sim.ok("RestartWorkloads", namespace="shop", workloads=["cart"], version=TARGET)  # other batches are fine
    sim.waits.clear()
    reason = sim.fail("RestartWorkloads", namespace="shop", workloads=["web"], version=TARGET)
    assert reason == "cluster c1 / namespace shop: workload web did not become ready: CrashLoopBackOff"
    assert [w.seconds for w in sim.waits] == [pytest.approx(2.0)]  # it fails once the batch had its time
    assert sidecars(sim.doc(), "shop") == {"cart": TARGET, "web": SOURCE}
    assert sim.fired() == 1
    sim.ok("RestartWorkloads", namespace="shop", workloads=["web"], version=TARGET)  # times: 1 → retry works


# ---------------------------------------------------------------- whole upgrades


def full_upgrade(sim: Sim) -> None:
    for job_type in PRECHECKS:
        sim.ok(job_type)
    control_plane(sim)
    migrate(sim, "shop", [["cart"], ["web"]])
    migrate(sim, "pay", [["api"]])
    sim.ok("SwitchDefaultRevision")
    sim.ok("UninstallControlPlane", revision=SRC)
    sim.ok("RemoveGateways", revision=SRC)


@pytest.mark.parametrize("timing", [REAL, INSTANT], ids=["speed-1", "speed-0"])
def test_a_full_upgrade_leaves_only_the_target(sim: Sim, timing: SimTiming) -> None:
    sim.timing = timing
    sim.mesh()
    full_upgrade(sim)
    doc = sim.doc()
    assert list(doc["controlPlane"]["revisions"]) == [TGT]
    assert doc["controlPlane"]["defaultRevision"] == TGT
    assert [g["revision"] for g in doc["gateways"]] == [TGT]
    assert sidecars(doc, "shop") == {"cart": TARGET, "web": TARGET}
    assert sidecars(doc, "pay") == {"api": TARGET}
    assert sidecars(doc, "legacy") == {"batch": None}
    assert labels(doc, "shop") == {"team": "shop", "istio.io/rev": TGT}
    assert labels(doc, "pay") == {"istio.io/rev": TGT}
    assert labels(doc, "legacy") == {"istio-injection": "disabled"}
    assert all("previousInjection" not in ns for ns in doc["namespaces"])
    if timing.speed == 0:
        assert sim.waits == []
    else:
        assert all(w.seconds > 0 for w in sim.waits) and sim.clock.now() > NOW


@pytest.mark.parametrize("timing", [REAL, INSTANT], ids=["speed-1", "speed-0"])
def test_a_rollback_after_a_partial_migration_restores_the_cluster_exactly(
    sim: Sim, timing: SimTiming
) -> None:
    sim.timing = timing
    sim.mesh()
    original = copy.deepcopy(sim.doc())
    control_plane(sim)
    migrate(sim, "shop", [["cart", "web"]])
    sim.ok("RelabelNamespace", namespace="pay")  # pay relabelled, its restart failed
    # Rollback
    sim.ok("RevertNamespaces", namespaces=["shop", "pay"])
    sim.ok("RestartWorkloads", namespace="shop", workloads=["cart", "web"], version=SOURCE)
    sim.ok("RestartWorkloads", namespace="pay", workloads=["api"], version=SOURCE)
    sim.ok("RestoreGateways")
    sim.ok("UninstallControlPlane", revision=TGT)
    assert sim.doc() == original
    if timing.speed == 0:
        assert sim.waits == []


# ---------------------------------------------------------------- concurrency


def test_an_operation_waits_for_the_cluster_row_and_loses_no_change(sim: Sim) -> None:
    """A writer holds the cluster row (and changes it) while an operation starts: the operation
    waits for it and then works on the committed document, so both changes survive."""
    sim.mesh()
    holding = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with sim.db.write() as conn:
                where = (t.clusters.c.account_id == sim.account) & (t.clusters.c.id == "c1")
                state = dict(
                    conn.execute(select(t.clusters.c.state).where(where).with_for_update()).scalar_one()
                )
                holding.set()
                time.sleep(0.3)
                labels(state, "legacy")["owner"] = "ops"
                conn.execute(t.clusters.update().where(where).values(state=state))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            holding.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(10)
    asker = Requester("RelabelNamespace", "job-l", "shop")
    assert sim.driver().ensure_namespace_revision("c1", "shop", TGT, asker).done
    thread.join(10)
    assert errors == []
    doc = sim.doc()
    assert labels(doc, "legacy") == {"istio-injection": "disabled", "owner": "ops"}
    assert labels(doc, "shop") == {"team": "shop", "istio.io/rev": TGT}


def test_first_references_racing_create_one_cluster(sim: Sim) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def relabel(index: int) -> None:
        try:
            start.wait(10)
            asker = Requester("RelabelNamespace", f"job-{index}", "default")
            sim.driver().ensure_namespace_revision("new", "default", TGT, asker)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=relabel, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert cluster_ids(sim.db, sim.account) == ["new"]
    assert set(sim.driver().operations("new")) == {f"job-{index}" for index in range(4)}


def test_a_refusal_commits_what_was_recorded_and_changes_nothing(sim: Sim) -> None:
    sim.mesh([{"jobType": "SwitchDefaultRevision", "times": 1, "reason": "busy"}])
    before = sim.doc()
    with pytest.raises(Refused, match="^busy$"):
        sim.driver().ensure_default_revision("c1", SRC, Requester("SwitchDefaultRevision", "job-s"))
    assert sim.fired() == 1
    assert sim.driver().operations("c1")["job-s"]["refused"] == "busy"
    assert sim.doc() == before


# --- sidecar injection set by a user (the namespace APIs) ---------------------------------------------


def test_namespace_injection_relabels_restarts_and_keeps_what_already_injects(sim: Sim) -> None:
    sim.mesh()
    driver = sim.driver()
    asker = Requester("UpdateSidecarInjection", "req-1", None)
    driver.ensure_namespace_injection("c1", "plain", SRC, restart=True, asker=asker)
    driver.ensure_namespace_injection("c1", "legacy", SRC, restart=False, asker=asker)
    driver.ensure_namespace_injection("c1", "shop", None, restart=True, asker=asker)
    driver.ensure_namespace_injection("c1", "pay", SRC, restart=True, asker=asker)  # injects already: kept
    doc = sim.doc()
    assert labels(doc, "plain") == {"istio.io/rev": SRC}
    assert labels(doc, "legacy") == {"istio.io/rev": SRC}
    assert labels(doc, "shop") == {"team": "shop"}
    assert labels(doc, "pay") == {"istio.io/rev": SRC}
    sidecars = {ns["name"]: [w["sidecarVersion"] for w in ns["workloads"]] for ns in doc["namespaces"]}
    assert sidecars["plain"] == [SOURCE]  # restarted into the revision's version
    assert sidecars["legacy"] == [None]  # relabelled, not restarted
    assert sidecars["shop"] == [None, None]
    with pytest.raises(Refused, match="revision 1-99-0-r1 is not installed"):
        driver.ensure_namespace_injection("c1", "plain", "1-99-0-r1", restart=False, asker=asker)
    with pytest.raises(Refused, match="namespace nowhere not found"):
        driver.ensure_namespace_injection("c1", "nowhere", SRC, restart=False, asker=asker)
