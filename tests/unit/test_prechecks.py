"""Pre-check rules: each passes on a healthy cluster and fails with an exact, actionable reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meshup.drivers.base import ClusterFacts, Gateway, Namespace, Nodes, Revision, Workload
from meshup.upgrades import prechecks as pc

SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
SRC_REV, TGT_REV = "1-15-7-r1", "1-18-7-r5"


def facts(**changes: object) -> ClusterFacts:
    """A healthy cluster running a 1.15.7-r1 mesh with one ingress gateway."""
    base = ClusterFacts(
        cluster_id="c1",
        kubernetes_version="1.28",
        status="Available",
        nodes=Nodes(count=3, cpu="8", memory="32Gi", master_labelled=3),
        namespaces=(
            Namespace(
                "shop",
                {"istio-injection": "enabled"},
                (Workload("cart", 3, SOURCE), Workload("web", 2, SOURCE)),
            ),
            Namespace("legacy", {"istio-injection": "disabled"}, (Workload("batch", 1, None),)),
        ),
        revisions={SRC_REV: Revision(SRC_REV, SOURCE, None, None)},
        default_revision=SRC_REV,
        gateways=(
            Gateway(
                f"istio-ingressgateway-{SRC_REV}",
                SRC_REV,
                {"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": SRC_REV},
            ),
        ),
        crds=("virtualservices.networking.istio.io",),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- CheckUpgradePath


def test_upgrade_path_passes_for_a_next_line_hop() -> None:
    assert pc.check_upgrade_path(SOURCE, TARGET) is None
    assert pc.check_upgrade_path("1.18.7-r1", "1.18.7-r5") is None


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        ("1.18.7-r5", "1.18.7-r1", "1.18.7-r1 is not newer than the current version 1.18.7-r5"),
        (
            "1.13.9-r5",
            "1.18.7-r5",
            "cannot upgrade from line 1.13 to line 1.18 in one task (next lines allowed from 1.13: 1.15)",
        ),
    ],
)
def test_upgrade_path_refuses_downgrades_and_line_skips(source: str, target: str, reason: str) -> None:
    assert pc.check_upgrade_path(source, target) == reason


def test_upgrade_path_refuses_unknown_targets() -> None:
    reason = pc.check_upgrade_path(SOURCE, "1.19.0-r1")
    assert reason is not None and reason.startswith("target version 1.19.0-r1 is not supported")


# ---------------------------------------------------------------- CheckClusterStatus


def test_cluster_status() -> None:
    assert pc.check_cluster_status(facts()) is None
    assert pc.check_cluster_status(facts(status="Unavailable")) == "cluster c1 is Unavailable"


# ---------------------------------------------------------------- CheckClusterVersion


def test_cluster_version_is_judged_against_the_target_line() -> None:
    assert pc.check_cluster_version(facts(kubernetes_version="v1.28.3"), TARGET) is None
    # 1.21 is fine for the 1.15 source but not for the 1.18 target
    assert pc.check_cluster_version(facts(kubernetes_version="1.21"), SOURCE) is None
    assert pc.check_cluster_version(facts(kubernetes_version="1.21"), TARGET) == (
        "cluster c1: Kubernetes 1.21 is not supported by mesh line 1.18 "
        "(supported: 1.25, 1.27, 1.28, 1.29, 1.30, 1.31, 1.32, 1.34)"
    )


# ---------------------------------------------------------------- CheckResources


def test_quantities() -> None:
    assert pc.millicores("8") == 8000
    assert pc.millicores("500m") == 500
    assert pc.millicores("1.5") == 1500
    assert pc.memory_bytes("32Gi") == 32 * 2**30
    assert pc.memory_bytes("1G") == 10**9
    assert pc.format_cpu(600) == "0.6"
    assert pc.format_cpu(2000) == "2"
    assert pc.format_memory(4 * 2**30) == "4Gi"
    assert pc.format_memory(2176 * 2**20) == "2176Mi"
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        pc.quantity("lots")


def test_resources_pass_on_a_roomy_cluster() -> None:
    assert pc.check_resources(facts(), TARGET, SRC_REV) is None


def test_resources_fail_with_numbers() -> None:
    # 1 node of 1 CPU / 3Gi: istiod 0.5/2Gi + gateway 0.1/128Mi + 5 injected replicas
    # (0.2 CPU / 256Mi each) + 1 plain replica (0.1/128Mi) use 1.6 CPU: nothing left.
    small = facts(nodes=Nodes(count=1, cpu="1", memory="3Gi", master_labelled=1))
    assert pc.check_resources(small, TARGET, SRC_REV) == (
        f"cluster c1: needs 0.6 CPU and 2176Mi free for istiod-{TGT_REV} and 1 gateway, "
        "has 0 CPU and 0Gi (1 node of 1 CPU and 3Gi, 1 labelled for the control plane)"
    )


def test_resources_count_only_labelled_nodes_for_the_control_plane() -> None:
    # plenty of room in the cluster, but the one labelled node (1 CPU, 4Gi) already carries
    # istiod and a gateway: 0.4 CPU and 1920Mi left there
    tight = facts(nodes=Nodes(count=5, cpu="1", memory="4Gi", master_labelled=1))
    assert pc.check_resources(tight, TARGET, SRC_REV) == (
        f"cluster c1: needs 0.6 CPU and 2176Mi free for istiod-{TGT_REV} and 1 gateway, "
        "has 0.4 CPU and 1920Mi (5 nodes of 1 CPU and 4Gi, 1 labelled for the control plane)"
    )
    unlabelled = facts(nodes=Nodes(count=3, cpu="8", memory="32Gi", master_labelled=0))
    reason = pc.check_resources(unlabelled, TARGET, SRC_REV)
    assert reason is not None and "has 0 CPU and 0Gi" in reason and "0 labelled" in reason


def test_resources_count_one_gateway_per_source_gateway_and_skip_what_is_installed() -> None:
    gateways = (
        Gateway("in-1-15-7-r1", SRC_REV, {"istio": "ingressgateway"}),
        Gateway("eg-1-15-7-r1", SRC_REV, {"istio": "ingressgateway"}),
    )
    small = facts(nodes=Nodes(count=1, cpu="1", memory="3Gi", master_labelled=1), gateways=gateways)
    reason = pc.check_resources(small, TARGET, SRC_REV)
    assert (
        reason is not None and "needs 0.7 CPU and 2304Mi free for istiod-1-18-7-r5 and 2 gateways" in reason
    )
    installed = {**small.revisions, TGT_REV: Revision(TGT_REV, TARGET, None, None)}
    target_gateway = Gateway("in-1-18-7-r5", TGT_REV, {"istio": "ingressgateway"})
    done = replace(small, revisions=installed, gateways=(*gateways, target_gateway))
    assert pc.check_resources(done, TARGET, SRC_REV) is None


# ---------------------------------------------------------------- CheckDeprecatedCRDs


def test_deprecated_crds() -> None:
    assert pc.check_deprecated_crds(facts(), TARGET) is None
    one = facts(crds=("virtualservices.networking.istio.io", "rbacconfigs.rbac.istio.io"))
    assert pc.check_deprecated_crds(one, TARGET) == (
        "cluster c1: CRD rbacconfigs.rbac.istio.io is not served by mesh line 1.18 (removed in 1.8); "
        "delete it before upgrading"
    )
    two = facts(crds=("handlers.config.istio.io", "policies.authentication.istio.io"))
    assert pc.check_deprecated_crds(two, TARGET) == (
        "cluster c1: CRDs handlers.config.istio.io, policies.authentication.istio.io are not served by "
        "mesh line 1.18 (removed in 1.8); delete them before upgrading"
    )


def test_removed_crds_are_cumulative_by_line() -> None:
    rules = pc.upgrade_rules()
    assert rules.removed_in("1.18")["rules.config.istio.io"] == "1.8"
    assert "rules.config.istio.io" not in rules.removed_in("1.6")


# ---------------------------------------------------------------- CheckGatewayLabels


def test_gateway_labels() -> None:
    assert pc.check_gateway_labels(facts(), TARGET) is None
    custom = facts(
        gateways=(
            *facts().gateways,
            Gateway("edge", SRC_REV, {"app": "edge"}),
            Gateway("internal", SRC_REV, {"istio": "internal"}),
        )
    )
    assert pc.check_gateway_labels(custom, TARGET) == (
        "cluster c1: gateway edge lacks label istio=ingressgateway needed by the mesh line 1.18 gateway "
        "selector; cluster c1: gateway internal lacks label istio=ingressgateway needed by the mesh line "
        "1.18 gateway selector"
    )


# ---------------------------------------------------------------- CheckInjectionLabels


def test_injection_labels() -> None:
    assert pc.check_injection_labels(facts()) is None
    disabled = Namespace("ops", {"istio-injection": "disabled", "istio.io/rev": SRC_REV})
    assert pc.check_injection_labels(facts(namespaces=(*facts().namespaces, disabled))) is None
    both = Namespace("pay", {"istio-injection": "enabled", "istio.io/rev": SRC_REV})
    assert pc.check_injection_labels(facts(namespaces=(*facts().namespaces, both))) == (
        "cluster c1 / namespace pay: has both istio-injection=enabled and istio.io/rev=1-15-7-r1; "
        "remove one of them"
    )
