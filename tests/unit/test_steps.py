"""Step functions against the in-memory fake driver: no database, no simulated time.

What each step asks of the driver (and who it says is asking), how it turns the driver's progress
into Done / Wait / Fail, and the reasons users see. Fault rules and simulated durations belong to
the simulated driver and are tested with it (tests/integration/test_simulated_driver.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from meshup.drivers.base import INJECTION_LABEL, REVISION_LABEL, Gateway, Nodes, Progress, Requester, pending
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.seed.schema import JOB_TYPES, ROOT_JOB_TYPES
from meshup.upgrades.prechecks import upgrade_rules
from meshup.upgrades.steps import RECHECK_SECONDS, STEPS
from tests.support.fake_driver import RETRY, FakeCluster, FakeDriver, FakeNamespace, FakeWorkload

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
SRC, TGT = "1-15-7-r1", "1-18-7-r5"


def running_mesh() -> FakeCluster:
    """c1 running a 1.15.7-r1 mesh: shop injected by label, pay by revision, two others not."""
    return FakeCluster(
        namespaces={
            "shop": FakeNamespace(
                {INJECTION_LABEL: "enabled", "team": "shop"},
                {"cart": FakeWorkload(3, SOURCE), "web": FakeWorkload(2, SOURCE)},
            ),
            "pay": FakeNamespace({REVISION_LABEL: SRC}, {"api": FakeWorkload(2, SOURCE)}),
            "legacy": FakeNamespace({INJECTION_LABEL: "disabled"}, {"batch": FakeWorkload(1, None)}),
            "plain": FakeNamespace({}, {"tool": FakeWorkload(1, None)}),
        },
        revisions={SRC: SOURCE},
        default_revision=SRC,
        gateways={
            f"istio-ingressgateway-{SRC}": Gateway(
                f"istio-ingressgateway-{SRC}",
                SRC,
                {"app": "istio-ingressgateway", "istio": "ingressgateway", REVISION_LABEL: SRC},
            )
        },
    )


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
class Runner:
    """Runs a step as the engine would: again after each Wait, with the same job id."""

    driver: FakeDriver = field(default_factory=FakeDriver)
    waits: list[Wait] = field(default_factory=list)
    jobs: int = 0

    @property
    def c1(self) -> FakeCluster:
        return self.driver.cluster("c1")

    def once(self, job_type: str, payload: dict[str, Any], job_id: str = "job-1") -> Outcome:
        return STEPS[job_type](StepContext(job_id, job_type, "cluster c1", dict(payload), NOW), self.driver)

    def run(self, job_type: str, **extra: Any) -> Outcome:
        self.jobs += 1
        payload = {**common(), **extra}
        for _ in range(50):
            outcome = self.once(job_type, payload, f"job-{self.jobs}")
            if not isinstance(outcome, Wait):
                return outcome
            self.waits.append(outcome)
            payload.update(outcome.state)
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
def runner() -> Runner:
    r = Runner()
    r.driver.clusters["c1"] = running_mesh()
    return r


PRECHECKS = [
    "CheckUpgradePath",
    "CheckClusterStatus",
    "CheckClusterVersion",
    "CheckResources",
    "CheckDeprecatedCRDs",
    "CheckGatewayLabels",
    "CheckInjectionLabels",
]


def test_every_leaf_job_type_has_a_step() -> None:
    leaves = set(JOB_TYPES) - set(ROOT_JOB_TYPES) - {"MigrateNamespace"}
    assert set(STEPS) == leaves


# ---------------------------------------------------------------- what steps ask, and who asks


@pytest.mark.parametrize(
    ("job_type", "extra", "operation", "namespace", "result"),
    [
        ("InstallControlPlane", {}, "ensure_control_plane", None, {"revision": TGT}),
        ("InstallGateways", {}, "ensure_gateways", None, {"gateways": [f"istio-ingressgateway-{TGT}"]}),
        ("RelabelNamespace", {"namespace": "shop"}, "ensure_namespace_revision", "shop", {"revision": TGT}),
        (
            "RestartWorkloads",
            {"namespace": "shop", "workloads": ["cart"], "version": TARGET},
            "ensure_sidecars",
            "shop",
            {"workloads": ["cart"], "version": TARGET},
        ),
        (
            "RemoveGateways",
            {"revision": SRC},
            "ensure_gateways_removed",
            None,
            {"removed": [f"istio-ingressgateway-{SRC}"]},
        ),
        ("CheckClusterStatus", {}, "inspect", None, {}),
        ("VerifyProxies", {"namespace": "plain", "version": None, "targetVersion": ""}, None, None, None),
    ],
)
def test_a_step_asks_its_operation_as_its_job(
    runner: Runner,
    job_type: str,
    extra: dict[str, Any],
    operation: str | None,
    namespace: str | None,
    result: Any,
) -> None:
    if operation is None:  # a payload gap: the step names it and asks nothing
        assert runner.fail(job_type, **extra) == f"{job_type}: job payload has no 'targetVersion'"
        assert runner.driver.calls == []
        return
    assert runner.ok(job_type, **extra) == Done(result)
    assert runner.driver.calls == [(operation, "c1", Requester(job_type, "job-1", namespace))]


def test_pending_operations_become_waits_and_the_same_job_asks_again() -> None:
    runner = Runner(FakeDriver(checks_until_done=2))
    runner.driver.clusters["c1"] = running_mesh()
    assert runner.ok("InstallControlPlane") == Done({"revision": TGT})
    assert runner.waits == [Wait(RETRY), Wait(RETRY)]
    askers = [asker for _, _, asker in runner.driver.calls]
    assert askers == [Requester("InstallControlPlane", "job-1")] * 3
    assert runner.c1.revisions == {SRC: SOURCE, TGT: TARGET}


def test_a_step_with_two_operations_waits_for_each(runner: Runner) -> None:
    runner.driver.checks_until_done = 1
    runner.ok("InstallGateways")  # the target has gateways now
    runner.driver.calls.clear()
    runner.waits.clear()
    outcome = runner.ok("RestoreGateways")
    assert outcome == Done(
        {"gateways": [f"istio-ingressgateway-{SRC}"], "removed": [f"istio-ingressgateway-{TGT}"]}
    )
    assert [call[0] for call in runner.driver.calls] == [
        "ensure_gateways",  # not yet: wait
        "ensure_gateways",  # done
        "ensure_gateways_removed",  # not yet: wait
        "ensure_gateways",  # done (asked again: steps keep no state)
        "ensure_gateways_removed",  # done
    ]
    assert len(runner.waits) == 2


def test_a_driver_without_an_estimate_is_asked_again_soon() -> None:
    class NoEstimate(FakeDriver):
        def inspect(self, cluster_id: str, asker: Requester, *, need_available: bool = False) -> Progress:
            return pending(None, "looking")

    ctx = StepContext("job-1", "CheckClusterStatus", "cluster c1", common(), NOW)
    assert STEPS["CheckClusterStatus"](ctx, NoEstimate()) == Wait(RECHECK_SECONDS)


def test_refusals_become_failures_with_their_reason(runner: Runner) -> None:
    runner.driver.refusals["ensure_namespace_revision"] = "webhook denied"
    assert runner.fail("RelabelNamespace", namespace="shop") == "webhook denied"
    assert runner.c1.namespaces["shop"].labels == {INJECTION_LABEL: "enabled", "team": "shop"}


# ---------------------------------------------------------------- pre-checks


@pytest.mark.parametrize("job_type", PRECHECKS)
def test_prechecks_pass_on_a_healthy_cluster(runner: Runner, job_type: str) -> None:
    assert runner.ok(job_type) == Done()
    assert [call[0] for call in runner.driver.calls] == ["inspect"]


@pytest.mark.parametrize(
    ("job_type", "change", "reason"),
    [
        ("CheckClusterStatus", {"status": "Unavailable"}, "cluster c1 is Unavailable"),
        (
            "CheckClusterVersion",
            {"kubernetes_version": "1.23"},
            "cluster c1: Kubernetes 1.23 is not supported by mesh line 1.18 "
            "(supported: 1.25, 1.27, 1.28, 1.29, 1.30, 1.31, 1.32, 1.34)",
        ),
        (
            "CheckResources",
            {"nodes": Nodes(count=2, cpu="2", memory="4Gi", master_labelled=1)},
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
            {"gateways": {"edge": Gateway("edge", SRC, {"app": "edge"})}},
            "cluster c1: gateway edge lacks label istio=ingressgateway needed by the mesh line 1.18 "
            "gateway selector",
        ),
    ],
)
def test_prechecks_fail_with_precise_reasons(
    runner: Runner, job_type: str, change: dict[str, Any], reason: str
) -> None:
    for name, value in change.items():
        setattr(runner.c1, name, value)
    assert runner.fail(job_type) == reason


def test_injection_label_check_and_upgrade_path(runner: Runner) -> None:
    runner.c1.namespaces["pay"].labels[INJECTION_LABEL] = "enabled"
    assert runner.fail("CheckInjectionLabels") == (
        "cluster c1 / namespace pay: has both istio-injection=enabled and istio.io/rev=1-15-7-r1; "
        "remove one of them"
    )
    assert runner.fail("CheckUpgradePath", targetVersion="1.15.5-r4") == (
        "1.15.5-r4 is not newer than the current version 1.15.7-r1"
    )
    runner.driver.calls.clear()
    mesh_level = {k: v for k, v in common().items() if k != "cluster"}
    assert runner.once("CheckUpgradePath", mesh_level) == Done()
    assert runner.driver.calls == []  # mesh level: no cluster to look at


def test_prechecks_look_at_unavailable_clusters(runner: Runner) -> None:
    runner.c1.status = "Unavailable"
    assert runner.ok("CheckClusterVersion") == Done()  # it reports the rules, not the status


# ---------------------------------------------------------------- control plane


def test_wait_control_plane_ready_waits_as_long_as_the_driver_says() -> None:
    runner = Runner(FakeDriver(ready_after=3))
    runner.driver.clusters["c1"] = running_mesh()
    runner.ok("InstallControlPlane")
    assert runner.ok("WaitControlPlaneReady") == Done({"revision": TGT})
    assert runner.waits == [Wait(RETRY)] * 3


def test_waiting_for_a_revision_that_is_not_installed_fails(runner: Runner) -> None:
    assert runner.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 is not installed"


def test_a_revision_that_never_gets_ready_times_out_after_the_expected_time_times_the_rule() -> None:
    runner = Runner(FakeDriver(expected_ready=4.0))
    runner.driver.clusters["c1"] = running_mesh()
    runner.driver.never_ready.add(TGT)
    runner.ok("InstallControlPlane")
    factor = upgrade_rules().ready_timeout_factor
    assert factor == 5
    assert runner.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 20s"
    # checks every 5s: 0, 5, 10, 15 seconds old, then 20 = 4s x 5
    assert runner.waits == [Wait(RETRY)] * 4


def test_a_never_ready_revision_with_no_expected_time_fails_at_once() -> None:
    runner = Runner(FakeDriver(expected_ready=0.0))
    runner.driver.clusters["c1"] = running_mesh()
    runner.driver.never_ready.add(TGT)
    runner.ok("InstallControlPlane")
    assert runner.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 0s"
    assert runner.waits == []


def test_the_last_wait_is_cut_to_the_timeout() -> None:
    runner = Runner(FakeDriver(expected_ready=1.5))  # timeout 7.5s; checks every 5s
    runner.driver.clusters["c1"] = running_mesh()
    runner.driver.never_ready.add(TGT)
    runner.ok("InstallControlPlane")
    assert runner.fail("WaitControlPlaneReady") == "cluster c1: istiod-1-18-7-r5 not ready after 7.5s"
    assert runner.waits == [Wait(5.0), Wait(2.5)]


def test_install_gateways_copies_the_source_gateways(runner: Runner) -> None:
    runner.c1.gateways = {
        "edge-1-15-7-r1": Gateway("edge-1-15-7-r1", SRC, {"istio": "ingressgateway", "x": "y"})
    }
    assert runner.ok("InstallGateways") == Done({"gateways": [f"edge-{TGT}"]})
    assert runner.c1.gateways[f"edge-{TGT}"] == Gateway(
        f"edge-{TGT}", TGT, {"istio": "ingressgateway", "x": "y", REVISION_LABEL: TGT}
    )


def test_install_gateways_without_a_source_asks_for_the_default_ingress(runner: Runner) -> None:
    runner.ok("InstallGateways", sourceRevision=None, sourceVersion=None)
    assert f"istio-ingressgateway-{TGT}" in runner.c1.gateways


def test_switch_default_revision_needs_the_revision_installed(runner: Runner) -> None:
    assert runner.fail("SwitchDefaultRevision") == "cluster c1: revision 1-18-7-r5 is not installed"
    runner.ok("InstallControlPlane")
    assert runner.ok("SwitchDefaultRevision") == Done({"defaultRevision": TGT})
    assert runner.c1.default_revision == TGT


def test_uninstall_and_remove_gateways_need_an_explicit_revision(runner: Runner) -> None:
    assert runner.fail("UninstallControlPlane") == "UninstallControlPlane: job payload has no 'revision'"
    assert runner.fail("RemoveGateways") == "RemoveGateways: job payload has no 'revision'"
    assert runner.driver.calls == []


def test_uninstall_reports_what_it_removed(runner: Runner) -> None:
    runner.ok("InstallControlPlane")
    assert runner.ok("UninstallControlPlane", revision=TGT) == Done({"removed": "istiod-1-18-7-r5"})
    assert TGT not in runner.c1.revisions


# ---------------------------------------------------------------- data plane


def test_restart_needs_its_workloads_listed(runner: Runner) -> None:
    assert runner.fail("RestartWorkloads", namespace="shop", version=TARGET) == (
        "RestartWorkloads: job payload has no list 'workloads'"
    )


def test_verify_proxies(runner: Runner) -> None:
    runner.ok("RestartWorkloads", namespace="shop", workloads=["web"], version=TARGET)
    assert runner.fail("VerifyProxies", namespace="shop") == (
        "cluster c1 / namespace shop: workload cart runs proxy 1.15.7-r1, expected 1.18.7-r5"
    )
    assert runner.fail("VerifyProxies", namespace="legacy") == (
        "cluster c1 / namespace legacy: workload batch runs no proxy, expected 1.18.7-r5"
    )
    assert runner.fail("VerifyProxies", namespace="nope") == "cluster c1: namespace nope not found"
    runner.ok("RestartWorkloads", namespace="shop", workloads=["cart"], version=TARGET)
    assert runner.ok("VerifyProxies", namespace="shop") == Done({"version": TARGET, "workloads": 2})
    assert runner.ok("VerifyProxies", namespace="pay", version=SOURCE) == Done(
        {"version": SOURCE, "workloads": 1}
    )
    asker = runner.driver.calls[-1][2]
    assert asker.namespace == "pay"


def test_revert_namespaces_names_every_missing_one_and_reverts_nothing(runner: Runner) -> None:
    runner.ok("RelabelNamespace", namespace="shop")
    assert runner.fail("RevertNamespaces", namespaces=["shop", "gone", "lost"]) == (
        "cluster c1: namespaces gone, lost not found"
    )
    assert runner.fail("RevertNamespaces", namespaces=["gone"]) == "cluster c1: namespace gone not found"
    assert runner.c1.namespaces["shop"].labels == {"team": "shop", REVISION_LABEL: TGT}
    assert runner.ok("RevertNamespaces", namespaces=["shop"]) == Done({"namespaces": ["shop"]})
    assert runner.c1.namespaces["shop"].labels == {"team": "shop", INJECTION_LABEL: "enabled"}


MUTATING = [
    ("InstallControlPlane", {}),
    ("InstallGateways", {}),
    ("RelabelNamespace", {"namespace": "shop"}),
    ("RestartWorkloads", {"namespace": "shop", "workloads": ["cart"], "version": TARGET}),
    ("SwitchDefaultRevision", {}),
    ("UninstallControlPlane", {"revision": TGT}),
    ("RemoveGateways", {"revision": SRC}),
    ("RevertNamespaces", {"namespaces": ["shop"]}),
    ("RestoreGateways", {}),
    ("WaitControlPlaneReady", {}),
    ("VerifyProxies", {"namespace": "shop"}),
]


@pytest.mark.parametrize(("job_type", "extra"), MUTATING)
def test_an_unavailable_cluster_fails_every_cluster_step(
    runner: Runner, job_type: str, extra: dict[str, Any]
) -> None:
    runner.ok("InstallControlPlane")
    runner.c1.status = "Unavailable"
    assert runner.fail(job_type, **extra) == "cluster c1 is Unavailable"
    assert runner.waits == []


# ---------------------------------------------------------------- whole upgrades on the fake


def test_a_full_upgrade_and_a_rollback_through_the_steps() -> None:
    runner = Runner(FakeDriver(checks_until_done=1, ready_after=2))
    runner.driver.clusters["c1"] = running_mesh()
    for job_type in PRECHECKS:
        runner.ok(job_type)
    for job_type in ("InstallControlPlane", "WaitControlPlaneReady", "InstallGateways"):
        runner.ok(job_type)
    for namespace, batches in (("shop", [["cart"], ["web"]]), ("pay", [["api"]])):
        runner.ok("RelabelNamespace", namespace=namespace)
        for batch in batches:
            runner.ok("RestartWorkloads", namespace=namespace, workloads=batch, version=TARGET)
        runner.ok("VerifyProxies", namespace=namespace)
    # Roll back pay only, then complete with shop.
    runner.ok("RevertNamespaces", namespaces=["pay"])
    runner.ok("RestartWorkloads", namespace="pay", workloads=["api"], version=SOURCE)
    assert runner.c1.namespaces["pay"].labels == {REVISION_LABEL: SRC}
    runner.ok("RelabelNamespace", namespace="pay")
    runner.ok("RestartWorkloads", namespace="pay", workloads=["api"], version=TARGET)
    runner.ok("SwitchDefaultRevision")
    runner.ok("UninstallControlPlane", revision=SRC)
    runner.ok("RemoveGateways", revision=SRC)
    cluster = runner.c1
    assert cluster.revisions == {TGT: TARGET} and cluster.default_revision == TGT
    assert [gw.revision for gw in cluster.gateways.values()] == [TGT]
    assert {name: w.sidecar for name, w in cluster.namespaces["shop"].workloads.items()} == {
        "cart": TARGET,
        "web": TARGET,
    }
    assert cluster.namespaces["legacy"].labels == {INJECTION_LABEL: "disabled"}
    assert all(ns.previous is None for ns in cluster.namespaces.values())
    assert runner.waits and all(w.seconds > 0 for w in runner.waits)
    # Every request named the job that made it: one job id per leaf run.
    jobs = {asker.job_id for _, _, asker in runner.driver.calls}
    assert len(jobs) == runner.jobs
