"""One step function per leaf job type: what the engine runs for a leaf, through a cluster driver.

A step is called with the leaf's :class:`StepContext` and the driver of the mesh's account, with
no database transaction open, and returns Done, Fail or Wait. Steps only talk to the driver
protocol (``drivers.base``): each asks for what it needs ("ensure X"), and when the driver says
the cluster is not there yet (a revision becoming ready, a batch restarting) the step returns
``Wait`` for the driver's suggested delay; the engine runs it again later and the driver sees the
same request again (the job id is in the :class:`Requester`), so steps keep no state of their own.
A driver's refusal (an Unavailable cluster, a missing namespace, an injected fault) fails the leaf
with its reason. Pre-checks inspect the cluster and apply the rules of ``upgrades.prechecks``.

``WaitControlPlaneReady`` gives up on a revision that is not ready after ``timeout = expected *
controlPlaneReadyTimeoutFactor`` seconds: the driver reports how long a revision usually takes to
get ready (``Progress.expected``; for simulated clusters the scaled simulated time), the factor is a
rule in ``data/upgrade_rules.yaml``.

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
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType

from meshup.drivers.base import (
    ClusterDriver,
    ClusterFacts,
    Progress,
    Refused,
    Requester,
    istiod_name,
    revision_of,
)
from meshup.engine.outcome import Done, Fail, Outcome, StepContext, Wait
from meshup.upgrades import prechecks
from meshup.upgrades.prechecks import upgrade_rules

StepFn = Callable[[StepContext, ClusterDriver], Outcome]
RECHECK_SECONDS = 1.0
"""How soon to ask again when a driver has no estimate."""


class _PayloadError(Exception):
    """The plan left out something the step needs (a bug): the leaf fails saying what."""


class _NotYet(Exception):
    """The driver is not done yet: the step waits (raised from deep inside a step)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(progress.note)
        self.progress = progress


def _step(fn: StepFn) -> StepFn:
    """Driver refusals and payload gaps become Fail, a pending operation becomes Wait."""

    @functools.wraps(fn)
    def run(ctx: StepContext, driver: ClusterDriver) -> Outcome:
        try:
            return fn(ctx, driver)
        except _NotYet as waiting:
            retry = waiting.progress.retry_in
            return Wait(RECHECK_SECONDS if retry is None else retry)
        except Refused as refused:
            return Fail(str(refused))
        except _PayloadError as error:
            return Fail(f"{ctx.job_type}: {error}")

    return run


def _ready(progress: Progress) -> Progress:
    """The progress of a finished operation; raises _NotYet for one still going."""
    if not progress.done:
        raise _NotYet(progress)
    return progress


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


def _has_source(ctx: StepContext) -> bool:
    return bool(ctx.payload.get("sourceRevision") or ctx.payload.get("sourceVersion"))


def _asker(ctx: StepContext, namespace: str | None = None) -> Requester:
    return Requester(job_type=ctx.job_type, job_id=ctx.job_id, namespace=namespace)


# ------------------------------------------------------------------------ pre-checks


def _check(
    rule: Callable[[StepContext, ClusterFacts], str | None],
) -> StepFn:
    @_step
    def run(ctx: StepContext, driver: ClusterDriver) -> Outcome:
        cluster = _text(ctx, "cluster")
        _ready(driver.inspect(cluster, _asker(ctx)))
        reason = rule(ctx, driver.facts(cluster))
        return Fail(reason) if reason else Done()

    return run


@_step
def check_upgrade_path(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster = ctx.payload.get("cluster")
    if cluster:  # a cluster-level check (faults and check time apply); else mesh level
        _ready(driver.inspect(str(cluster), _asker(ctx)))
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


# ------------------------------------------------------------------------ control plane


@_step
def install_control_plane(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    _ready(driver.ensure_control_plane(cluster, revision, _text(ctx, "targetVersion"), _asker(ctx)))
    return Done({"revision": revision})


@_step
def wait_control_plane_ready(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    progress = driver.control_plane_ready(cluster, revision, _asker(ctx))
    if progress.done:
        return Done({"revision": revision})
    timeout = progress.expected * upgrade_rules().ready_timeout_factor
    left = timeout - progress.elapsed
    if left <= 0:
        return Fail(f"cluster {cluster}: {istiod_name(revision)} not ready after {timeout:g}s")
    return Wait(left if progress.retry_in is None else min(progress.retry_in, left))


@_step
def install_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    source = _revision(ctx, "source") if _has_source(ctx) else None
    progress = _ready(driver.ensure_gateways(cluster, revision, source, _asker(ctx)))
    return Done({"gateways": list(progress.names)})


@_step
def switch_default_revision(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _revision(ctx, "target")
    _ready(driver.ensure_default_revision(cluster, revision, _asker(ctx)))
    return Done({"defaultRevision": revision})


@_step
def uninstall_control_plane(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _text(ctx, "revision")
    _ready(driver.ensure_control_plane_removed(cluster, revision, _asker(ctx)))
    return Done({"removed": istiod_name(revision)})


@_step
def remove_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, revision = _text(ctx, "cluster"), _text(ctx, "revision")
    progress = _ready(driver.ensure_gateways_removed(cluster, revision, _asker(ctx)))
    return Done({"removed": list(progress.names)})


@_step
def restore_gateways(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, source, target = _text(ctx, "cluster"), _revision(ctx, "source"), _revision(ctx, "target")
    kept = _ready(driver.ensure_gateways(cluster, source, target, _asker(ctx)))
    removed = _ready(driver.ensure_gateways_removed(cluster, target, _asker(ctx)))
    return Done({"gateways": list(kept.names), "removed": list(removed.names)})


# ------------------------------------------------------------------------ data plane


@_step
def relabel_namespace(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace, revision = _text(ctx, "cluster"), _text(ctx, "namespace"), _revision(ctx, "target")
    _ready(driver.ensure_namespace_revision(cluster, namespace, revision, _asker(ctx, namespace)))
    return Done({"revision": revision})


@_step
def restart_workloads(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace = _text(ctx, "cluster"), _text(ctx, "namespace")
    workloads, version = _names(ctx, "workloads"), _text(ctx, "version")
    _ready(driver.ensure_sidecars(cluster, namespace, workloads, version, _asker(ctx, namespace)))
    return Done({"workloads": workloads, "version": version})


@_step
def verify_proxies(ctx: StepContext, driver: ClusterDriver) -> Outcome:
    cluster, namespace = _text(ctx, "cluster"), _text(ctx, "namespace")
    expected = str(ctx.payload.get("version") or _text(ctx, "targetVersion"))
    _ready(driver.inspect(cluster, _asker(ctx, namespace), need_available=True))
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
    _ready(driver.inspect(cluster, _asker(ctx), need_available=True))  # which namespaces exist
    facts = driver.facts(cluster)
    missing = [name for name in namespaces if facts.namespace(name) is None]
    if missing:
        noun = "namespace" if len(missing) == 1 else "namespaces"
        return Fail(f"cluster {cluster}: {noun} {', '.join(missing)} not found")
    for namespace in namespaces:
        _ready(driver.ensure_namespace_reverted(cluster, namespace, revision, _asker(ctx)))
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

__all__ = ["STEPS", "StepFn"]
