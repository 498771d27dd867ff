"""Step functions against the simulated driver on a throwaway SQLite database.

``Sim`` plays the engine's part: it runs a step, and on ``Wait`` advances a fake clock by the
requested seconds and merges the returned state into the payload, until the step is Done or Failed.
Each test runs in a transaction that is rolled back, so one migrated database serves the module.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from meshup.drivers.simulated import SimulatedDriver
from meshup.engine.outcome import Done, Fail, Outcome, SimTiming, StepContext, Wait
from meshup.seed.schema import JOB_TYPES, ROOT_JOB_TYPES
from meshup.store import accounts as account_store
from meshup.store import meshes as mesh_store
from meshup.store.db import Database
from meshup.upgrades.steps import STEPS, WAIT_KEY

ACCOUNT = "a" * 32
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
SRC, TGT = "1-15-7-r1", "1-18-7-r5"
REAL = SimTiming()  # speed 1: control plane ready after 6s, batches 2s, checks 0.3s
INSTANT = SimTiming(speed=0)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("steps") / "meshup.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.write() as conn:
        account_store.upsert_account(conn, name="acme", account_id=ACCOUNT, enabled=True, now=NOW)
    yield db
    db.dispose()


@pytest.fixture
def conn(database: Database) -> Iterator[Connection]:
    with database.write_engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


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


@dataclass
class Sim:
    conn: Connection
    timing: SimTiming = REAL
    now: datetime = NOW
    waits: list[Wait] = field(default_factory=list)

    def driver(self) -> SimulatedDriver:
        return SimulatedDriver(self.conn, ACCOUNT, self.now, self.timing)

    def put(
        self, state: dict[str, Any], faults: list[dict[str, Any]] | None = None, cluster: str = "c1"
    ) -> None:
        mesh_store.put_cluster(
            self.conn,
            account_id=ACCOUNT,
            cluster_id=cluster,
            name=cluster,
            state=state,
            faults=[{"fired": 0, **fault} for fault in faults or []],
            now=self.now,
        )

    def mesh(self, faults: list[dict[str, Any]] | None = None, **changes: Any) -> None:
        """c1: the cluster document above, adopted by a 1.15.7-r1 mesh."""
        self.put({**cluster_document(), **changes}, faults)
        self.driver().adopt("c1", SOURCE)

    def doc(self, cluster: str = "c1") -> dict[str, Any]:
        return self.driver().document(cluster)

    def once(self, job_type: str, payload: dict[str, Any]) -> Outcome:
        ctx = StepContext("job-1", job_type, "cluster c1", dict(payload), 1, self.now, self.timing)
        return STEPS[job_type](ctx, self.driver())

    def run(self, job_type: str, **extra: Any) -> Outcome:
        """Run a leaf to completion as the engine would (the clock follows the waits)."""
        payload = {**common(), **extra}
        for _ in range(100):
            outcome = self.once(job_type, payload)
            if not isinstance(outcome, Wait):
                return outcome
            self.waits.append(outcome)
            payload.update(outcome.state)
            self.now += timedelta(seconds=outcome.seconds)
        raise AssertionError(f"{job_type} never finished")

    def ok(self, job_type: str, **extra: Any) -> Done:
        outcome = self.run(job_type, **extra)
        assert isinstance(outcome, Done), outcome
        return outcome

    def fail(self, job_type: str, **extra: Any) -> str:
        outcome = self.run(job_type, **extra)
        assert isinstance(outcome, Fail), outcome
        return outcome.reason


def common() -> dict[str, Any]:
    return {
        "cluster": "c1",
        "meshId": "mesh-1",
        "sourceVersion": SOURCE,
        "targetVersion": TARGET,
        "sourceRevision": SRC,
        "targetRevision": TGT,
    }


@pytest.fixture
def sim(conn: Connection) -> Sim:
    return Sim(conn)


def labels(doc: dict[str, Any], namespace: str) -> dict[str, str]:
    return next(ns["labels"] for ns in doc["namespaces"] if ns["name"] == namespace)


def sidecars(doc: dict[str, Any], namespace: str) -> dict[str, str | None]:
    ns = next(ns for ns in doc["namespaces"] if ns["name"] == namespace)
    return {w["name"]: w["sidecarVersion"] for w in ns["workloads"]}


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


# ---------------------------------------------------------------- registry, driver basics


def test_every_leaf_job_type_has_a_step() -> None:
    leaves = set(JOB_TYPES) - set(ROOT_JOB_TYPES) - {"MigrateNamespace"}
    assert set(STEPS) == leaves


def test_unknown_clusters_are_created_healthy_on_first_reference(sim: Sim) -> None:
    facts = sim.driver().facts("fresh")
    assert facts.available and facts.kubernetes_version == "1.28"
    assert [ns.name for ns in facts.namespaces] == ["default"]
    assert mesh_store.cluster_row(sim.conn, ACCOUNT, "fresh") is not None


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
    sim.now += timedelta(hours=1)
    sim.driver().adopt("c1", SOURCE)
    assert sim.doc() == doc
    assert sim.driver().control_plane_status("c1", SRC).ready


# ---------------------------------------------------------------- pre-checks


@pytest.mark.parametrize("job_type", PRECHECKS)
def test_prechecks_pass_on_a_healthy_cluster(sim: Sim, job_type: str) -> None:
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
            # the labelled node carries istiod-1-15-7-r1 and its gateway (0.6 CPU, 2176Mi) already
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
    assert isinstance(sim.once("CheckUpgradePath", {**mesh_level, WAIT_KEY: NOW.isoformat()}), Done)


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
    sim.now += timedelta(seconds=2)
    sim.ok("InstallControlPlane")  # a re-run keeps the readyAt it had
    assert sim.doc()["controlPlane"]["revisions"][TGT] == entry
    assert sim.ok("WaitControlPlaneReady") == Done({"revision": TGT})
    assert [w.seconds for w in sim.waits] == [pytest.approx(4.0)]
    assert sim.now == NOW + timedelta(seconds=6)


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
    first = sim.once(
        "RestartWorkloads", {**common(), "namespace": "shop", "workloads": ["cart"], "version": TARGET}
    )
    assert isinstance(first, Wait) and first.seconds == pytest.approx(2.0)
    assert first.state == {WAIT_KEY: (NOW + timedelta(seconds=2)).isoformat()}
    assert sidecars(sim.doc(), "shop") == {"cart": SOURCE, "web": SOURCE}  # nothing yet
    sim.ok("RestartWorkloads", namespace="shop", workloads=["cart"], version=TARGET)
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
    sim.ok(job_type, **extra)
    once = sim.doc()
    assert once != before, f"{job_type} changed nothing"
    sim.now += timedelta(minutes=5)
    sim.ok(job_type, **extra)
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


# ---------------------------------------------------------------- faults


def test_a_fault_with_times_fires_that_often_then_the_step_succeeds(sim: Sim) -> None:
    sim.mesh([{"jobType": "InstallControlPlane", "times": 1, "reason": "quota exceeded"}])
    assert sim.fail("InstallControlPlane") == "quota exceeded"
    assert TGT not in sim.doc()["controlPlane"]["revisions"]
    assert sim.driver().faults("c1")[0]["fired"] == 1
    sim.ok("InstallControlPlane")
    assert TGT in sim.doc()["controlPlane"]["revisions"]
    assert sim.driver().faults("c1")[0]["fired"] == 1


def test_a_fault_without_times_fires_always(sim: Sim) -> None:
    sim.mesh([{"jobType": "CheckResources", "times": None, "reason": "metrics server down"}])
    for _ in range(3):
        assert sim.fail("CheckResources") == "metrics server down"
    assert sim.driver().faults("c1")[0]["fired"] == 3
    sim.ok("CheckClusterStatus")  # other step types are not affected


def test_a_fault_is_consumed_on_the_first_run_only(sim: Sim) -> None:
    sim.mesh([{"jobType": "RestartWorkloads", "times": 2, "reason": "boom"}])
    payload = {
        **common(),
        "namespace": "shop",
        "workloads": ["cart"],
        "version": TARGET,
        WAIT_KEY: NOW.isoformat(),
    }
    assert isinstance(sim.once("RestartWorkloads", payload), Done)  # a resumed run
    assert sim.driver().faults("c1")[0]["fired"] == 0


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
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 30s"
    assert [w.seconds for w in sim.waits] == [pytest.approx(30.0)]
    assert sim.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 30s"  # retry
    assert sim.driver().faults("c1")[0]["fired"] == 1  # consumed by the one installation


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
    assert sim.driver().faults("c1")[0]["fired"] == 0


def test_a_workload_that_never_gets_ready_fails_its_batch(sim: Sim) -> None:
    sim.mesh([{"jobType": "RestartWorkloads", "times": 1, "reason": "CrashLoopBackOff", "workload": "web"}])
    sim.ok("RestartWorkloads", namespace="shop", workloads=["cart"], version=TARGET)  # other batches are fine
    reason = sim.fail("RestartWorkloads", namespace="shop", workloads=["web"], version=TARGET)
    assert reason == "cluster c1 / namespace shop: workload web did not become ready: CrashLoopBackOff"
    assert sidecars(sim.doc(), "shop") == {"cart": TARGET, "web": SOURCE}
    assert sim.driver().faults("c1")[0]["fired"] == 1
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
        assert all(w.seconds > 0 for w in sim.waits) and sim.now > NOW


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
