"""One step function per leaf job type: what the engine runs for a leaf, through a cluster driver.

A step is called with the leaf's :class:`StepContext` and a driver bound to the same transaction,
and returns Done, Fail or Wait. Steps are idempotent (after a crash a step may run again) and take
simulated time by returning ``Wait``: the first run returns ``Wait(seconds, state={"waitUntil": …})``
and the engine runs the step again later with that state merged into the payload. With
``SimTiming.speed == 0`` no step ever waits: it completes in one run.

Every step, on its first run (no ``waitUntil`` in the payload), first asks the driver for an
injected fault (``driver.consume_fault``) and fails with its reason if one fires. Every step except
the pre-checks then fails with ``cluster <id> is Unavailable`` on an Unavailable cluster (checked on
every run).

Payload keys (``StepContext.payload``), put there by the plans:

- all cluster leaves: ``cluster``; upgrade leaves also ``meshId``, ``sourceVersion``,
  ``targetVersion``, ``sourceRevision``, ``targetRevision`` (a missing revision is derived from its
  version with ``revision_of``).
- ``RelabelNamespace``, ``VerifyProxies``: ``namespace``. ``VerifyProxies`` expects ``version`` if
  given, else ``targetVersion``.
- ``RestartWorkloads``: ``namespace``, ``workloads`` (names in this batch), ``version`` (the proxy
  version to roll to: the target on upgrade, the source on rollback).
- ``RevertNamespaces``: ``namespaces`` (namespaces of this cluster to revert from
  ``targetRevision``).
- ``UninstallControlPlane``, ``RemoveGateways``: ``revision`` (the revision to remove: the source
  in Complete, the target in Rollback) — required, never guessed.
- ``InstallControlPlane``/``WaitControlPlaneReady``/``InstallGateways``: ``targetRevision`` and
  ``targetVersion``; ``InstallGateways`` copies the gateways of ``sourceRevision`` if given.
- ``RestoreGateways``: ``sourceRevision``, ``targetRevision``.
- ``CheckUpgradePath``: ``sourceVersion``, ``targetVersion`` (``cluster`` optional: mesh level).

State a step keeps between runs (merged into the payload by the engine): ``waitUntil``. A retry
that starts a new job must not carry it over.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from meshup.drivers.base import ClusterDriver, ClusterFacts, Refused, istiod_name, revision_of
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.timefmt import parse_rfc3339
from meshup.upgrades import prechecks
from meshup.upgrades.prechecks import upgrade_rules

StepFn = Callable[[StepContext, ClusterDriver], Outcome]
WAIT_KEY = "waitUntil"


class _PayloadError(Exception):
    """The plan left out something the step needs (a bug): the leaf fails saying what."""


def _step(fn: StepFn) -> StepFn:
    """Driver refusals and payload gaps become Fail, never an exception the engine must retry."""

    @functools.wraps(fn)
    def run(ctx: StepContext, driver: ClusterDriver) -> Outcome:
        try:
            return fn(ctx, driver)
        except Refused as refused:
            return Fail(str(refused))
        except _PayloadError as error:
            return Fail(f"{ctx.job_type}: {error}")

    return run


# ------------------------------------------------------------------------ payload access


def _text(ctx: StepContext, key: str) -> str:
    value = ctx.payload.get(key)
    if value is None or value == "":
        raise _PayloadError(f"job payload has no {key!r}")
    return str(value)


def _names(ctx: StepContext, key: str) -> list[str]:
    value = ctx.payload.get(key)
    if not isinstance(value, list):
        raise _PayloadError(f"job payload has no list {key!r}")
    return [str(item) for item in value]


def _revision(ctx: StepContext, which: str) -> str:
    """``sourceRevision``/``targetRevision``, or the revision of the matching version."""
    revision = ctx.payload.get(f"{which}Revision")
    if revision:
        return str(revision)
    return revision_of(_text(ctx, f"{which}Version"))


def _iso(instant: datetime) -> str:
    return instant.isoformat()


def _first_run(ctx: StepContext) -> bool:
    return WAIT_KEY not in ctx.payload


def _wait(ctx: StepContext, seconds: float, note: str) -> Wait:
    return Wait(seconds, note, state={WAIT_KEY: _iso(ctx.now + timedelta(seconds=seconds))})


def _prelude(
    ctx: StepContext,
    driver: ClusterDriver,
    *,
    delay: float = 0.0,
    note: str = "",
    available: bool = True,
    namespace: str | None = None,
) -> Outcome | None:
    """Fault injection (first run), availability (every run), simulated duration: an outcome to
    return at once, or None when the step should do its work now."""
    cluster = ctx.payload.get("cluster")
    if cluster is not None:
        if _first_run(ctx):
            reason = driver.consume_fault(str(cluster), ctx.job_type, namespace)
            if reason is not None:
                return Fail(reason)
        if available:
            facts = driver.facts(str(cluster))
            if not facts.available:
                return Fail(f"cluster {cluster} is {facts.status}")
    until = ctx.payload.get(WAIT_KEY)
    if until is None:
        seconds = ctx.timing.scaled(delay)
        return _wait(ctx, seconds, note) if seconds > 0 else None
    remaining = (parse_rfc3339(str(until)) - ctx.now).total_seconds()
    return Wait(remaining, note, state={WAIT_KEY: str(until)}) if remaining > 0 else None


# ------------------------------------------------------------------------ pre-checks


def _check(
    rule: Callable[[StepContext, ClusterFacts], str | None],
) -> StepFn:
    @_step
    def run(ctx: StepContext, driver: ClusterDriver) -> Outcome:
        cluster = _text(ctx, "cluster")
        early = _prelude(ctx, driver, delay=ctx.timing.check, note="checking", available=False)
        if early is not None:
            return early
        reason = rule(ctx, driver.facts(cluster))
        return Fail(reason) if reason else Done()

    return run


@_step
def check_upgrade_path(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    early = _prelude(ctx, driver, delay=ctx.timing.check, note="checking", available=False)
    if early is not None:
        return early
    reason = prechecks.check_upgrade_path(_text(ctx, "sourceVersion"), _text(ctx, "targetVersion"))
    return Fail(reason) if reason else Done()


check_cluster_status = _check(lambda ctx, facts: prechecks.check_cluster_status(facts))
check_cluster_version = _check(
    lambda ctx, facts: prechecks.check_cluster_version(facts, _text(ctx, "targetVersion"))
)
check_resources = _check(
    lambda ctx, facts: prechecks.check_resources(
        facts, _text(ctx, "targetVersion"), _revision(ctx, "source") if _has_source(ctx) else None
    )
)
check_deprecated_crds = _check(
    lambda ctx, facts: prechecks.check_deprecated_crds(facts, _text(ctx, "targetVersion"))
)
check_gateway_labels = _check(
    lambda ctx, facts: prechecks.check_gateway_labels(facts, _text(ctx, "targetVersion"))
)
check_injection_labels = _check(lambda ctx, facts: prechecks.check_injection_labels(facts))


def _has_source(ctx: StepContext) -> bool:
    return bool(ctx.payload.get("sourceRevision") or ctx.payload.get("sourceVersion"))


# ------------------------------------------------------------------------ control plane


@_step
def install_control_plane(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    early = _prelude(ctx, driver)
    if early is not None:
        return early
    driver.ensure_control_plane(cluster, revision, _text(ctx, "targetVersion"))
    return Done({"revision": revision})


@_step
def wait_control_plane_ready(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    early = _prelude(ctx, driver)
    if early is not None:
        return early
    status = driver.control_plane_status(cluster, revision)
    if not status.installed:
        return Fail(f"cluster {cluster}: {istiod_name(revision)} is not installed")
    if status.ready:
        return Done({"revision": revision})
    timing = ctx.timing
    timeout = timing.scaled(timing.control_plane_ready * upgrade_rules().ready_timeout_factor)
    left = timeout - status.age
    if left <= 0:
        return Fail(f"cluster {cluster}: {istiod_name(revision)} not ready after {timeout:g}s")
    seconds = left if status.ready_in is None else min(status.ready_in, left)
    return _wait(ctx, seconds, f"waiting for {istiod_name(revision)}")


@_step
def install_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    source = _revision(ctx, "source") if _has_source(ctx) else None
    early = _prelude(ctx, driver, delay=ctx.timing.gateway, note="installing gateways")
    if early is not None:
        return early
    return Done({"gateways": driver.ensure_gateways(cluster, revision, source)})


@_step
def switch_default_revision(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    early = _prelude(ctx, driver)
    if early is not None:
        return early
    driver.ensure_default_revision(cluster, revision)
    return Done({"defaultRevision": revision})


@_step
def uninstall_control_plane(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _text(ctx, "revision")
    early = _prelude(ctx, driver, delay=ctx.timing.uninstall, note=f"uninstalling {istiod_name(revision)}")
    if early is not None:
        return early
    driver.ensure_control_plane_removed(cluster, revision)
    return Done({"removed": istiod_name(revision)})


@_step
def remove_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _text(ctx, "revision")
    early = _prelude(ctx, driver, delay=ctx.timing.gateway, note="removing gateways")
    if early is not None:
        return early
    return Done({"removed": driver.ensure_gateways_removed(cluster, revision)})


@_step
def restore_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, source, target = _text(ctx, "cluster"), _revision(ctx, "source"), _revision(ctx, "target")
    early = _prelude(ctx, driver, delay=ctx.timing.gateway, note="restoring gateways")
    if early is not None:
        return early
    kept = driver.ensure_gateways(cluster, source, target)
    removed = driver.ensure_gateways_removed(cluster, target)
    return Done({"gateways": kept, "removed": removed})


# ------------------------------------------------------------------------ data plane


@_step
def relabel_namespace(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace, revision = _text(ctx, "cluster"), _text(ctx, "namespace"), _revision(ctx, "target")
    early = _prelude(ctx, driver, namespace=namespace)
    if early is not None:
        return early
    driver.ensure_namespace_revision(cluster, namespace, revision)
    return Done({"revision": revision})


@_step
def restart_workloads(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace = _text(ctx, "cluster"), _text(ctx, "namespace")
    workloads, version = _names(ctx, "workloads"), _text(ctx, "version")
    early = _prelude(
        ctx,
        driver,
        delay=ctx.timing.restart_batch,
        note=f"restarting {', '.join(workloads)}",
        namespace=namespace,
    )
    if early is not None:
        return early
    for workload in workloads:
        reason = driver.consume_fault(cluster, ctx.job_type, namespace, workload)
        if reason is not None:
            return Fail(
                f"cluster {cluster} / namespace {namespace}: workload {workload} did not become ready: {reason}"
            )
    driver.ensure_sidecars(cluster, namespace, workloads, version)
    return Done({"workloads": workloads, "version": version})


@_step
def verify_proxies(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace = _text(ctx, "cluster"), _text(ctx, "namespace")
    expected = str(ctx.payload.get("version") or _text(ctx, "targetVersion"))
    early = _prelude(ctx, driver, delay=ctx.timing.check, note="verifying proxies", namespace=namespace)
    if early is not None:
        return early
    found = driver.facts(cluster).namespace(namespace)
    if found is None:
        return Fail(f"cluster {cluster}: namespace {namespace} not found")
    wrong = [
        f"workload {w.name} runs proxy {w.sidecar_version}"
        if w.sidecar_version
        else f"workload {w.name} runs no proxy"
        for w in found.workloads
        if w.sidecar_version != expected
    ]
    if wrong:
        return Fail(f"cluster {cluster} / namespace {namespace}: {', '.join(wrong)}, expected {expected}")
    return Done({"version": expected, "workloads": len(found.workloads)})


@_step
def revert_namespaces(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespaces, revision = _text(ctx, "cluster"), _names(ctx, "namespaces"), _revision(ctx, "target")
    early = _prelude(ctx, driver)
    if early is not None:
        return early
    facts = driver.facts(cluster)
    missing = [name for name in namespaces if facts.namespace(name) is None]
    if missing:
        noun = "namespace" if len(missing) == 1 else "namespaces"
        return Fail(f"cluster {cluster}: {noun} {', '.join(missing)} not found")
    for namespace in namespaces:
        driver.ensure_namespace_reverted(cluster, namespace, revision)
    return Done({"namespaces": namespaces})


STEPS: Mapping[str, StepFn] = MappingProxyType(
    {
        "CheckUpgradePath": check_upgrade_path,
        "CheckClusterStatus": check_cluster_status,
        "CheckClusterVersion": check_cluster_version,
        "CheckResources": check_resources,
        "CheckDeprecatedCRDs": check_deprecated_crds,
        "CheckGatewayLabels": check_gateway_labels,
        "CheckInjectionLabels": check_injection_labels,
        "InstallControlPlane": install_control_plane,
        "WaitControlPlaneReady": wait_control_plane_ready,
        "InstallGateways": install_gateways,
        "RelabelNamespace": relabel_namespace,
        "RestartWorkloads": restart_workloads,
        "VerifyProxies": verify_proxies,
        "SwitchDefaultRevision": switch_default_revision,
        "UninstallControlPlane": uninstall_control_plane,
        "RemoveGateways": remove_gateways,
        "RevertNamespaces": revert_namespaces,
        "RestoreGateways": restore_gateways,
    }
)
"""Step function of every leaf job type (parents such as ``MigrateNamespace`` have none)."""

__all__ = ["STEPS", "WAIT_KEY", "StepFn"]
