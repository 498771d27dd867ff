"""Pre-check rules of a canary upgrade: pure functions over cluster facts and versions.

Each rule returns None when the cluster passes, or a reason that names the cluster (and the
namespace, gateway or CRD) and the cause. The facts they judge come from the cluster driver; the
thresholds and lists from ``meshup/data/upgrade_rules.yaml``.

Resource model (``check_resources``): every node has ``nodes.cpu`` and ``nodes.memory``. What runs
requests: an istiod per installed revision, a gateway deployment per gateway, and per workload
replica its application plus, when injected, its sidecar (``upgrade_rules.yaml: resources``). The
control plane (istiod, gateways) runs only on the ``nodes.masterLabelled`` nodes. The upgrade
needs room for the target istiod and one gateway per gateway of the source revision (at least
one), minus what is already installed for the target. Room available = the smaller of the free
capacity of the whole cluster and that of the labelled nodes after the control plane already there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

import yaml

from meshup.drivers.base import INJECTION_LABEL, REVISION_LABEL, ClusterFacts, istiod_name, revision_of
from meshup.meshes.versions import catalogue, parse_version

# ------------------------------------------------------------------------ quantities

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
MI = 2**20
GI = 2**30


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``8``, ``500m``, ``32Gi``, ``1.5``) in base units."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match.group(1)) * _FACTORS[match.group(2) or ""]


def millicores(text: str) -> int:
    return int(quantity(text) * 1000)


def memory_bytes(text: str) -> int:
    return int(quantity(text))


def format_cpu(millis: int) -> str:
    """600 → ``0.6``, 2000 → ``2``."""
    value = (Decimal(millis) / 1000).normalize()
    return f"{value:f}"


def format_memory(amount: int) -> str:
    """Whole gibibytes as ``4Gi``, anything else in mebibytes (``2176Mi``, ``1.5Mi``)."""
    if amount % GI == 0:
        return f"{amount // GI}Gi"
    mebibytes = (Decimal(amount) / MI).quantize(Decimal("0.1")).normalize()
    return f"{mebibytes:f}Mi"


# ------------------------------------------------------------------------ rules data


@dataclass(frozen=True, slots=True)
class Requests:
    cpu: int  # millicores
    memory: int  # bytes

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu + other.cpu, self.memory + other.memory)

    def __mul__(self, factor: int) -> Requests:
        return Requests(self.cpu * factor, self.memory * factor)

    def __sub__(self, other: Requests) -> Requests:
        return Requests(self.cpu - other.cpu, self.memory - other.memory)

    def covers(self, other: Requests) -> bool:
        return self.cpu >= other.cpu and self.memory >= other.memory


ZERO = Requests(0, 0)


@dataclass(frozen=True, slots=True)
class UpgradeRules:
    istiod: Requests
    gateway: Requests
    workload: Requests
    sidecar: Requests
    ready_timeout_factor: float
    gateway_selectors: Mapping[str, Mapping[str, str]]
    removed_crds: Mapping[str, tuple[str, ...]]  # line → CRDs no longer served from that line on

    def gateway_selector(self, line: str) -> Mapping[str, str]:
        return self.gateway_selectors.get(line) or self.gateway_selectors.get("default") or {}

    def removed_in(self, line: str) -> dict[str, str]:
        """CRD → the line that removed it, for every CRD not served by ``line``."""
        goal = _line_key(line)
        out: dict[str, str] = {}
        for removed_line, crds in sorted(self.removed_crds.items(), key=lambda item: _line_key(item[0])):
            if _line_key(removed_line) <= goal:
                for crd in crds:
                    out.setdefault(crd, removed_line)
        return out


def _line_key(line: str) -> tuple[int, ...]:
    return tuple(int(part) for part in line.split("."))


def _requests(data: Mapping[str, object]) -> Requests:
    return Requests(millicores(str(data["cpu"])), memory_bytes(str(data["memory"])))


@cache
def upgrade_rules() -> UpgradeRules:
    data = yaml.safe_load(resources.files("meshup.data").joinpath("upgrade_rules.yaml").read_text())
    res = data["resources"]
    return UpgradeRules(
        istiod=_requests(res["istiod"]),
        gateway=_requests(res["gateway"]),
        workload=_requests(res["workload"]),
        sidecar=_requests(res["sidecar"]),
        ready_timeout_factor=float(data["controlPlaneReadyTimeoutFactor"]),
        gateway_selectors={
            str(line): {str(k): str(v) for k, v in labels.items()}
            for line, labels in (data.get("gatewaySelector") or {}).items()
        },
        removed_crds={
            str(line): tuple(str(crd) for crd in crds or ())
            for line, crds in (data.get("removedCrds") or {}).items()
        },
    )


def _line(version: str) -> str:
    parsed = parse_version(version)
    return parsed.line if parsed is not None else version


# ------------------------------------------------------------------------ the rules


def check_upgrade_path(source_version: str, target_version: str) -> str | None:
    """CheckUpgradePath: the mesh may go from source to target in one canary task."""
    return catalogue().upgrade_refusal(source_version, target_version)


def check_cluster_status(facts: ClusterFacts) -> str | None:
    """CheckClusterStatus: the cluster is Available."""
    return None if facts.available else f"cluster {facts.cluster_id} is {facts.status}"


def check_cluster_version(facts: ClusterFacts, target_version: str) -> str | None:
    """CheckClusterVersion: the target mesh line supports the cluster's Kubernetes version."""
    if catalogue().supports_kubernetes(target_version, facts.kubernetes_version):
        return None
    supported = ", ".join(catalogue().kubernetes_for(target_version)) or "none"
    return (
        f"cluster {facts.cluster_id}: Kubernetes {facts.kubernetes_version} is not supported by mesh "
        f"line {_line(target_version)} (supported: {supported})"
    )


def resource_usage(facts: ClusterFacts, rules: UpgradeRules) -> tuple[Requests, Requests]:
    """(control plane, workloads) requests of what runs on the cluster now."""
    control = rules.istiod * len(facts.revisions) + rules.gateway * len(facts.gateways)
    workloads = ZERO
    for namespace in facts.namespaces:
        for workload in namespace.workloads:
            per_replica = rules.workload + (rules.sidecar if workload.sidecar_version else ZERO)
            workloads = workloads + per_replica * workload.replicas
    return control, workloads


def check_resources(
    facts: ClusterFacts,
    target_version: str,
    source_revision: str | None,
    rules: UpgradeRules | None = None,
) -> str | None:
    """CheckResources: room for a second control plane (istiod and gateways) of the target."""
    rules = rules or upgrade_rules()
    target = revision_of(target_version)
    parts: list[str] = []
    needed = ZERO
    if target not in facts.revisions:
        needed = needed + rules.istiod
        parts.append(istiod_name(target))
    if not facts.gateways_of(target):
        count = max(1, len(facts.gateways_of(source_revision)) if source_revision else 1)
        needed = needed + rules.gateway * count
        parts.append(f"{count} gateway" if count == 1 else f"{count} gateways")
    if not parts:
        return None
    try:
        node = Requests(millicores(facts.nodes.cpu), memory_bytes(facts.nodes.memory))
    except ValueError as error:
        return f"cluster {facts.cluster_id}: cannot judge node capacity: {error}"
    control, workloads = resource_usage(facts, rules)
    cluster_free = node * facts.nodes.count - control - workloads
    labelled_free = node * facts.nodes.master_labelled - control
    room = Requests(
        max(0, min(cluster_free.cpu, labelled_free.cpu)),
        max(0, min(cluster_free.memory, labelled_free.memory)),
    )
    if room.covers(needed):
        return None
    nodes = facts.nodes
    return (
        f"cluster {facts.cluster_id}: needs {format_cpu(needed.cpu)} CPU and {format_memory(needed.memory)} "
        f"free for {' and '.join(parts)}, has {format_cpu(room.cpu)} CPU and {format_memory(room.memory)} "
        f"({nodes.count} {'node' if nodes.count == 1 else 'nodes'} of {nodes.cpu} CPU and {nodes.memory}, "
        f"{nodes.master_labelled} labelled for the control plane)"
    )


def check_deprecated_crds(
    facts: ClusterFacts, target_version: str, rules: UpgradeRules | None = None
) -> str | None:
    """CheckDeprecatedCRDs: no installed CRD that the target line no longer serves."""
    rules = rules or upgrade_rules()
    line = _line(target_version)
    removed = rules.removed_in(line)
    found = [crd for crd in facts.crds if crd in removed]
    if not found:
        return None
    lines = ", ".join(sorted({removed[crd] for crd in found}, key=_line_key))
    if len(found) == 1:
        return (
            f"cluster {facts.cluster_id}: CRD {found[0]} is not served by mesh line {line} "
            f"(removed in {lines}); delete it before upgrading"
        )
    return (
        f"cluster {facts.cluster_id}: CRDs {', '.join(found)} are not served by mesh line {line} "
        f"(removed in {lines}); delete them before upgrading"
    )


def check_gateway_labels(
    facts: ClusterFacts, target_version: str, rules: UpgradeRules | None = None
) -> str | None:
    """CheckGatewayLabels: every gateway has the labels the target line's gateway selector needs."""
    rules = rules or upgrade_rules()
    line = _line(target_version)
    selector = rules.gateway_selector(line)
    problems = []
    for gateway in facts.gateways:
        missing = [f"{key}={value}" for key, value in selector.items() if gateway.labels.get(key) != value]
        if missing:
            noun = "label" if len(missing) == 1 else "labels"
            problems.append(
                f"cluster {facts.cluster_id}: gateway {gateway.name} lacks {noun} {', '.join(missing)} "
                f"needed by the mesh line {line} gateway selector"
            )
    return "; ".join(problems) or None


def check_injection_labels(facts: ClusterFacts) -> str | None:
    """CheckInjectionLabels: no namespace has both injection labels (``istio-injection=disabled``
    with a revision label is fine: injection is off)."""
    problems = []
    for namespace in facts.namespaces:
        injection, revision = namespace.injection, namespace.revision
        if injection is not None and revision is not None and injection != "disabled":
            problems.append(
                f"cluster {facts.cluster_id} / namespace {namespace.name}: has both "
                f"{INJECTION_LABEL}={injection} and {REVISION_LABEL}={revision}; remove one of them"
            )
    return "; ".join(problems) or None
