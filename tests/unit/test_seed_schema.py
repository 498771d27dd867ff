"""Seed-file parsing and validation (seed contract)."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshup.seed.schema import JOB_TYPES, ROOT_JOB_TYPES, SeedError, SeedNodes, load_seed, parse_seed

EP = "7c1e0b2a-0000-4000-8000-000000000001"

# The example of seed.md, made valid (secrets filled in, group policies given).
EXAMPLE = f"""
accounts:
  - name: acme
    id: 5f0d9c3a6b1e4c2d8e7f60718293a4b5
    projects:
      - name: cn-north-4
        id: 0123456789abcdef0123456789abcdef
    enterpriseProjects:
      - {{id: {EP}, name: payments}}
    users:
      - name: acme-admin
        root: true
        password: "Root-Passw0rd!"
        accessKeys:
          - {{ak: AKROOTEXAMPLE0000001, sk: "RootSecretKeyExample00000000000000000001"}}
      - name: alice
        password: "Alice-Passw0rd!"
        groups: [readers]
        accessKeys:
          - {{ak: AKALICEEXAMPLE000001, sk: "AliceSecretKeyExample0000000000000000001"}}
          - {{ak: AKALICETEMP000000001, sk: "AliceTempSecret000000000000000000000001",
              securityToken: "tok-alice-0001", expiresAt: "2030-01-01T00:00:00Z"}}
        identityPolicies:
          - Version: "5.0"
            Statement:
              - Effect: Allow
                Action: ["asm:mesh:getUpgradeJob"]
                Resource: ["asm:*:*:mesh:*"]
                Condition: {{StringEquals: {{"g:ResourceTag/team": ["payments"]}}}}
        rolePolicies:
          - scope: {{enterpriseProject: {EP}}}
            policy: {{Version: "1.1", Statement: [{{Effect: Allow, Action: ["asm:mesh:*"]}}]}}
    groups:
      - name: readers
        identityPolicies:
          - {{Version: "5.0", Statement: [{{Effect: Allow, Action: ["asm:mesh:get*"]}}]}}
        rolePolicies:
          - scope: account
            policy: {{Version: "1.1", Statement: [{{Effect: Allow, Action: ["asm:mesh:list*"]}}]}}
          - scope: {{project: cn-north-4}}
            policy: {{Version: "1.1", Statement: [{{Effect: Deny, Action: ["asm:mesh:delete*"]}}]}}
    clusters:
      - id: c1
        name: prod-1
        kubernetesVersion: "1.28"
        status: Available
        nodes: {{count: 6, cpu: "8", memory: 32Gi, masterLabelled: 3}}
        namespaces:
          - name: shop
            labels: {{istio-injection: enabled}}
            workloads: [{{name: cart, replicas: 3}}, {{name: web, replicas: 2}}]
        faults:
          - {{jobType: WaitControlPlaneReady, times: 1, reason: "istiod-1-18-7-r5 not ready after 300s"}}
    meshes:
      - name: mesh-prod
        id: 9b2f4c1e-0000-4000-8000-000000000001
        project: cn-north-4
        version: 1.15.7-r1
        enterpriseProjectId: {EP}
        tags: {{team: payments}}
        clusters: [c1]
        phase: Running
        jobs:
          - uid: 2d1c7a00-0000-4000-8000-000000000001
            type: ControlPlaneUpgrade
            phase: Failed
            reason: ""
            subjobs:
              - {{type: InstallControlPlane, phase: Success}}
              - {{type: WaitControlPlaneReady, phase: Failed, reason: "istiod not ready after 300s"}}
"""


def example() -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE)
    assert isinstance(doc, dict)
    return doc


def errors(doc: object) -> list[str]:
    with pytest.raises(SeedError) as info:
        parse_seed(doc)
    return info.value.errors


def account(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["accounts"][0]
    return result


# ------------------------------------------------------------------------------------------------
# A valid file


def test_example_parses_with_every_field() -> None:
    seed = parse_seed(example())
    (acme,) = seed.accounts
    assert (acme.name, acme.id, acme.enabled) == ("acme", "5f0d9c3a6b1e4c2d8e7f60718293a4b5", True)
    assert [(p.name, p.id) for p in acme.projects] == [("cn-north-4", "0123456789abcdef0123456789abcdef")]
    assert [(e.id, e.name) for e in acme.enterprise_projects] == [(EP, "payments")]

    admin, alice = acme.users
    assert (admin.name, admin.root, admin.enabled, admin.password) == (
        "acme-admin",
        True,
        True,
        "Root-Passw0rd!",
    )
    assert admin.id is None and admin.groups == () and admin.tags == {}
    (root_key,) = admin.access_keys
    assert (root_key.ak, root_key.sk) == ("AKROOTEXAMPLE0000001", "RootSecretKeyExample00000000000000000001")
    assert root_key.security_token is None and root_key.expires_at is None and root_key.enabled

    assert (alice.root, alice.groups) == (False, ("readers",))
    permanent, temporary = alice.access_keys
    assert permanent.security_token is None
    assert temporary.security_token == "tok-alice-0001"
    assert temporary.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert temporary.expires_at.tzinfo is not None
    (identity,) = alice.identity_policies
    assert type(identity) is dict
    assert identity["Statement"][0]["Condition"] == {"StringEquals": {"g:ResourceTag/team": ["payments"]}}
    (grant,) = alice.role_policies
    assert (grant.scope_kind, grant.scope_value) == ("enterprise_project", EP)
    assert grant.policy == {"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": ["asm:mesh:*"]}]}

    (readers,) = acme.groups
    assert readers.name == "readers"
    assert readers.identity_policies[0]["Statement"][0]["Action"] == ["asm:mesh:get*"]
    assert [(g.scope_kind, g.scope_value) for g in readers.role_policies] == [
        ("account", None),
        ("project", "cn-north-4"),
    ]

    (c1,) = acme.clusters
    assert (c1.id, c1.name, c1.kubernetes_version, c1.status) == ("c1", "prod-1", "1.28", "Available")
    assert c1.nodes == SeedNodes(count=6, cpu="8", memory="32Gi", master_labelled=3)
    (shop,) = c1.namespaces
    assert (shop.name, shop.labels) == ("shop", {"istio-injection": "enabled"})
    assert [(w.name, w.replicas, w.sidecar_version, w.extra) for w in shop.workloads] == [
        ("cart", 3, None, {}),
        ("web", 2, None, {}),
    ]
    (fault,) = c1.faults
    assert (fault.job_type, fault.times, fault.reason, fault.extra) == (
        "WaitControlPlaneReady",
        1,
        "istiod-1-18-7-r5 not ready after 300s",
        {},
    )
    assert c1.extra == {}

    (mesh,) = acme.meshes
    assert (mesh.name, mesh.id, mesh.project, mesh.version) == (
        "mesh-prod",
        "9b2f4c1e-0000-4000-8000-000000000001",
        "cn-north-4",
        "1.15.7-r1",
    )
    assert (mesh.enterprise_project_id, mesh.tags, mesh.clusters, mesh.phase) == (
        EP,
        (("team", "payments"),),
        ("c1",),
        "Running",
    )
    assert mesh.extra == {}
    (job,) = mesh.jobs
    assert (job.uid, job.type, job.phase, job.target) == (
        "2d1c7a00-0000-4000-8000-000000000001",
        "ControlPlaneUpgrade",
        "Failed",
        "",
    )
    assert job.reason == "WaitControlPlaneReady: istiod not ready after 300s"  # derived
    install, wait = job.subjobs
    assert (install.type, install.phase, install.reason, install.subjobs) == (
        "InstallControlPlane",
        "Success",
        "",
        (),
    )
    assert (wait.phase, wait.reason) == ("Failed", "istiod not ready after 300s")
    assert job.creation_timestamp is job.start_time is job.completion_time is None


def test_result_is_immutable() -> None:
    seed = parse_seed(example())
    with pytest.raises(AttributeError):
        seed.accounts[0].name = "other"  # type: ignore[misc]
    assert isinstance(seed.accounts, tuple) and isinstance(seed.accounts[0].users, tuple)


def test_defaults() -> None:
    seed = parse_seed(
        {
            "accounts": [
                {
                    "name": "a",
                    "projects": [{"name": "cn-north-4"}],
                    "enterpriseProjects": [{"id": "0"}],
                    "users": [{"name": "u", "accessKeys": [{"ak": "AK1", "sk": "12345678"}]}],
                    "clusters": [
                        {"id": "c1", "kubernetesVersion": "v1.28.3", "namespaces": [{"name": "ns"}]}
                    ],
                    "meshes": [
                        {
                            "name": "mesh",
                            "project": "cn-north-4",
                            "version": "1.18.7-r5",
                            "clusters": ["c1", "c2"],
                            "jobs": [{"type": "PreCheck", "subjobs": [{"type": "CheckUpgradePath"}]}],
                        }
                    ],
                }
            ]
        }
    )
    (acct,) = seed.accounts
    assert acct.id is None and acct.enabled and acct.groups == ()
    assert acct.enterprise_projects[0].name == "default"
    (user,) = acct.users
    assert (user.root, user.enabled, user.password, user.access_keys[0].enabled) == (False, True, None, True)
    (cluster,) = acct.clusters
    assert (cluster.name, cluster.status, cluster.nodes) == ("c1", "Available", SeedNodes(3, "8", "32Gi", 3))
    assert cluster.namespaces[0].labels == {} and cluster.namespaces[0].workloads == ()
    (mesh,) = acct.meshes
    assert (mesh.enterprise_project_id, mesh.phase, mesh.tags, mesh.id) == ("0", "Running", (), None)
    assert mesh.clusters == ("c1", "c2")  # c2 is undeclared: allowed
    (job,) = mesh.jobs
    assert (job.phase, job.subjobs[0].phase, job.reason) == ("Initializing", "Initializing", "")


def test_nodes_defaults_follow_count_and_accept_numbers() -> None:
    doc = example()
    account(doc)["clusters"][0]["nodes"] = {"count": 5, "cpu": 16, "memory": "64Gi"}
    nodes = parse_seed(doc).accounts[0].clusters[0].nodes
    assert nodes == SeedNodes(count=5, cpu="16", memory="64Gi", master_labelled=5)


def test_extra_keys_are_kept() -> None:
    doc = example()
    acct = account(doc)
    acct["clusters"][0]["controlPlaneRevisions"] = [{"revision": "1-15-7-r1", "ready": True}]
    acct["clusters"][0]["crds"] = ["envoyfilters.networking.istio.io"]
    workload = acct["clusters"][0]["namespaces"][0]["workloads"][0]
    workload.update({"sidecarVersion": "1.15.7-r1", "neverReady": True})
    acct["clusters"][0]["faults"][0]["namespace"] = "shop"
    acct["meshes"][0]["config"] = {"tracing": {"sampling": 1.5}}
    cluster = parse_seed(doc).accounts[0].clusters[0]
    assert cluster.extra == {
        "controlPlaneRevisions": [{"revision": "1-15-7-r1", "ready": True}],
        "crds": ["envoyfilters.networking.istio.io"],
    }
    assert cluster.namespaces[0].workloads[0].sidecar_version == "1.15.7-r1"
    assert cluster.namespaces[0].workloads[0].extra == {"neverReady": True}
    assert cluster.faults[0].extra == {"namespace": "shop"}
    assert parse_seed(doc).accounts[0].meshes[0].extra == {"config": {"tracing": {"sampling": 1.5}}}


def test_mesh_tags_keep_file_order() -> None:
    doc = example()
    account(doc)["meshes"][0]["tags"] = {"z": "1", "a": "", "m": "3"}
    assert parse_seed(doc).accounts[0].meshes[0].tags == (("z", "1"), ("a", ""), ("m", "3"))


def test_timestamps() -> None:
    doc = yaml.safe_load(
        """
accounts:
  - name: a
    users:
      - name: u
        accessKeys:
          - {ak: AK1, sk: "12345678", expiresAt: 2030-01-01T02:00:00+02:00}
          - {ak: AK2, sk: "12345678", expiresAt: "2030-01-01T00:00:00.5Z", enabled: false}
"""
    )
    first, second = parse_seed(doc).accounts[0].users[0].access_keys
    assert first.expires_at == datetime(2030, 1, 1, tzinfo=UTC) and first.expires_at.tzinfo is UTC
    assert second.expires_at == datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert second.enabled is False


def test_leaf_timestamps_are_kept() -> None:
    doc = example()
    leaf = account(doc)["meshes"][0]["jobs"][0]["subjobs"][1]
    leaf.update(
        creationTimestamp="2026-01-01T00:00:00Z",
        startTime="2026-01-01T00:00:01Z",
        completionTime="2026-01-01T00:05:00Z",
    )
    job = parse_seed(doc).accounts[0].meshes[0].jobs[0].subjobs[1]
    assert job.creation_timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert job.start_time == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert job.completion_time == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def test_unquoted_policy_version_is_normalised() -> None:
    doc = yaml.safe_load(
        """
accounts:
  - name: a
    users:
      - name: u
        identityPolicies: [{Version: 5.0, Statement: [{Effect: Allow, Action: ["asm:mesh:*"]}]}]
"""
    )
    assert parse_seed(doc).accounts[0].users[0].identity_policies[0]["Version"] == "5.0"


def test_parent_phase_may_be_omitted_and_is_derived() -> None:
    doc = example()
    job = account(doc)["meshes"][0]["jobs"][0]
    del job["phase"]
    job["subjobs"][1]["phase"] = "Running"
    job["subjobs"][1]["reason"] = ""
    parsed = parse_seed(doc).accounts[0].meshes[0].jobs[0]
    assert (parsed.phase, parsed.reason) == ("Running", "")


def test_nested_parents_are_derived() -> None:
    doc = example()
    account(doc)["meshes"][0]["jobs"] = [
        {
            "type": "DataPlaneUpgrade",
            "phase": "Failed",
            "subjobs": [
                {
                    "type": "MigrateNamespace",
                    "target": "cluster c1 / namespace shop",
                    "subjobs": [
                        {"type": "RelabelNamespace", "phase": "Success"},
                        {"type": "RestartWorkloads", "phase": "Failed", "reason": "cart not ready"},
                    ],
                },
                {"type": "VerifyProxies"},
            ],
        }
    ]
    job = parse_seed(doc).accounts[0].meshes[0].jobs[0]
    assert job.subjobs[0].phase == "Failed"
    assert job.subjobs[0].reason == "RestartWorkloads: cart not ready"
    assert job.phase == "Failed"
    assert job.reason == "MigrateNamespace cluster c1 / namespace shop: RestartWorkloads: cart not ready"


def test_job_type_constants() -> None:
    assert set(ROOT_JOB_TYPES) <= set(JOB_TYPES)
    assert len(set(JOB_TYPES)) == len(JOB_TYPES)
    assert {"CreateMesh", "DeleteMesh", "Rollback", "RestoreGateways", "CheckDeprecatedCRDs"} <= set(
        JOB_TYPES
    )


# ------------------------------------------------------------------------------------------------
# One failing case per rule. Each table holds (where, new value, expected error) relative to one
# entry of the example: the value at the dotted path ``where`` is replaced (DELETE: removed) and
# some error must start with the entry's path followed by the expected text.

DELETE = object()

ACCOUNT = ("", "accounts[0]")
USER = ("users.1", "accounts[0].users[1]")
KEY = ("users.1.accessKeys.1", "accounts[0].users[1].accessKeys[1]")
ROLE = ("users.1.rolePolicies.0", "accounts[0].users[1].rolePolicies[0]")
CLUSTER = ("clusters.0", "accounts[0].clusters[0]")
MESH = ("meshes.0", "accounts[0].meshes[0]")
JOB = ("meshes.0.jobs.0", "accounts[0].meshes[0].jobs[0]")

_SCOPES = "must be account, {account: true}, {project: <project name>} or {enterpriseProject: <id>}"
_LEAF = {"type": "InstallControlPlane"}
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"

RULES: list[tuple[tuple[str, str], str, object, str]] = [
    (ACCOUNT, "name", "ac me", "name: must be 1-64 characters of A-Z, a-z, 0-9, _ and -"),
    (ACCOUNT, "name", DELETE, "name: is required"),
    (ACCOUNT, "name", "a" * 65, "name: must be 1-64 characters"),
    (ACCOUNT, "id", "5F0D9C3A6B1E4C2D8E7F60718293A4B5", "id: must be 32 lowercase hexadecimal characters"),
    (ACCOUNT, "enabled", "yes", "enabled: must be a boolean (true or false)"),
    (ACCOUNT, "user", [], "user: unknown field (did you mean users?)"),
    (ACCOUNT, "users", {}, "users: must be a list, not a mapping"),
    (ACCOUNT, "projects.0.name", "CN_North", "projects[0].name: must be a region id"),
    (ACCOUNT, "projects.0.name", "c", "projects[0].name: must be a region id"),
    (ACCOUNT, "projects.0.id", "123", "projects[0].id: must be 32 lowercase hexadecimal characters"),
    (ACCOUNT, "projects.0.region", "x", "projects[0].region: unknown field"),
    (ACCOUNT, "enterpriseProjects.0.id", "a b", 'enterpriseProjects[0].id: must be "0" or 1-64'),
    (ACCOUNT, "enterpriseProjects.0.id", 0, "enterpriseProjects[0].id: must be a string (put it in quotes)"),
    (ACCOUNT, "enterpriseProjects.0.name", DELETE, "enterpriseProjects[0].name: is required"),
    (ACCOUNT, "groups.0.name", "read ers", "groups[0].name: must be 1-64 characters"),
    (ACCOUNT, "groups.0.users", [], "groups[0].users: unknown field"),
    (
        ACCOUNT,
        "groups.0.identityPolicies.0.Version",
        "1.1",
        'groups[0].identityPolicies[0].Version: must be "5.0"',
    ),
    (USER, "name", "al ice", "name: must be 1-64 characters of A-Z, a-z, 0-9, _, ., @ and -"),
    (USER, "id", "xyz", "id: must be 32 lowercase hexadecimal characters"),
    (USER, "password", "short", "password: must be 8-128 characters"),
    (USER, "password", "p" * 129, "password: must be 8-128 characters"),
    (USER, "root", True, "root: an account has at most one root user (already accounts[0].users[0])"),
    (USER, "root", "true", "root: must be a boolean"),
    (USER, "groups", ["writers"], "groups[0]: unknown group writers"),
    (USER, "groups", ["readers", "readers"], "groups[1]: group readers listed twice"),
    (USER, "tags", {"_sys_x": "1"}, "tags._sys_x: key must be 1-128 characters and not start with _sys_"),
    (USER, "tags", {"team": 1}, "tags.team: must be a string"),
    (USER, "access_keys", [], "access_keys: unknown field (did you mean accessKeys?)"),
    (USER, "identityPolicies.0", "allow all", "identityPolicies[0]: must be a mapping, not a string"),
    (
        USER,
        "identityPolicies.0.Statement.0.Effect",
        "Permit",
        'identityPolicies[0].Statement[0].Effect: must be "Allow" or "Deny"',
    ),
    (
        USER,
        "identityPolicies.0.Statement.0.Condition",
        {"DateLessThan": {"g:CurrentTime": [datetime(2030, 1, 1, tzinfo=UTC)]}},
        "identityPolicies[0].Statement[0].Condition.DateLessThan.g:CurrentTime[0]: must be plain data; "
        "put dates and times in quotes",
    ),
    (KEY, "ak", "AK-1", "ak: must be 1-128 letters and digits"),
    (KEY, "ak", DELETE, "ak: is required"),
    (KEY, "sk", "short", "sk: must be 8-128 printable characters"),
    (KEY, "sk", "abcdefgh\n", "sk: must be 8-128 printable characters"),
    (KEY, "sk", "abcdéfgh", "sk: must be 8-128 printable characters"),
    (KEY, "expiresAt", DELETE, "expiresAt: is required with securityToken (temporary keys need expiresAt)"),
    (KEY, "securityToken", "a\tb", "securityToken: must be 1-4096 printable characters"),
    (KEY, "securityToken", "", "securityToken: must be 1-4096 printable characters"),
    (KEY, "expiresAt", "tomorrow", "expiresAt: must be an RFC 3339 timestamp"),
    (KEY, "expiresAt", "2030-01-01T00:00:00", "expiresAt: must be an RFC 3339 timestamp"),
    (KEY, "expiresAt", datetime(2030, 1, 1), "expiresAt: must be an RFC 3339 timestamp with a time zone"),
    (KEY, "expiresAt", "2030-02-30T00:00:00Z", "expiresAt: must be an RFC 3339 timestamp"),
    (KEY, "enabled", 1, "enabled: must be a boolean"),
    (
        ROLE,
        "policy.Statement.0.Resource",
        ["*"],
        "policy.Statement[0].Resource: not allowed in a Version 1.1",
    ),
    (ROLE, "policy", DELETE, "policy: is required"),
    (ROLE, "scope", DELETE, "scope: is required"),
    (ROLE, "grant", 1, "grant: unknown field"),
    (ROLE, "scope", {"project": "eu-west-0"}, "scope.project: unknown project eu-west-0"),
    (
        ROLE,
        "scope",
        {"enterpriseProject": "nope"},
        "scope.enterpriseProject: unknown enterprise project nope",
    ),
    (ROLE, "scope", {"account": False}, "scope.account: must be true"),
    (ROLE, "scope", "project", f"scope: {_SCOPES}"),
    (ROLE, "scope", {"account": True, "project": "cn-north-4"}, f"scope: {_SCOPES}"),
    (ROLE, "scope", {"region": "cn-north-4"}, "scope.region: unknown field"),
    (CLUSTER, "id", "C1", "id: must be 1-64 characters of a-z, 0-9 and -"),
    (CLUSTER, "id", DELETE, "id: is required"),
    (
        CLUSTER,
        "kubernetesVersion",
        "latest",
        "kubernetesVersion: must be a Kubernetes version like 1.28 or v1.28.3",
    ),
    (CLUSTER, "kubernetesVersion", 1.28, "kubernetesVersion: must be a string (put it in quotes)"),
    (CLUSTER, "kubernetesVersion", DELETE, "kubernetesVersion: is required"),
    (CLUSTER, "status", "Broken", "status: must be one of Available, Unavailable"),
    (CLUSTER, "name", "", "name: must be 1-64 characters without control characters"),
    (CLUSTER, "nodes.count", 0, "nodes.count: must be at least 1"),
    (CLUSTER, "nodes.count", "6", "nodes.count: must be an integer"),
    (CLUSTER, "nodes.count", True, "nodes.count: must be an integer"),
    (CLUSTER, "nodes.masterLabelled", -1, "nodes.masterLabelled: must be at least 0"),
    (CLUSTER, "nodes.masterLabelled", 7, "nodes.masterLabelled: must not exceed count (6)"),
    (CLUSTER, "nodes.cpu", "eight", "nodes.cpu: must be a Kubernetes quantity"),
    (CLUSTER, "nodes.memory", "32 GB", "nodes.memory: must be a Kubernetes quantity"),
    (CLUSTER, "nodes.gpus", 1, "nodes.gpus: unknown field"),
    (CLUSTER, "namespaces.0.name", "Shop", "namespaces[0].name: must be a DNS label"),
    (CLUSTER, "namespaces.0.name", "a" * 64, "namespaces[0].name: must be a DNS label"),
    (
        CLUSTER,
        "namespaces.0.labels",
        {"istio-injection": True},
        "namespaces[0].labels.istio-injection: must be a string",
    ),
    (
        CLUSTER,
        "namespaces.0.labels",
        {"team": "a b"},
        "namespaces[0].labels.team: must be a Kubernetes label value",
    ),
    (
        CLUSTER,
        "namespaces.0.labels",
        {"bad key": "x"},
        'namespaces[0].labels["bad key"]: key must be a Kubernetes',
    ),
    (CLUSTER, "namespaces.0.pods", [], "namespaces[0].pods: unknown field"),
    (
        CLUSTER,
        "namespaces.0.workloads.1.replicas",
        -1,
        "namespaces[0].workloads[1].replicas: must be at least 0",
    ),
    (
        CLUSTER,
        "namespaces.0.workloads.1.replicas",
        2.5,
        "namespaces[0].workloads[1].replicas: must be an integer",
    ),
    (
        CLUSTER,
        "namespaces.0.workloads.1.name",
        "Web",
        "namespaces[0].workloads[1].name: must be a Kubernetes name",
    ),
    (
        CLUSTER,
        "namespaces.0.workloads.1.name",
        "cart",
        "namespaces[0].workloads[1].name: duplicate workload cart",
    ),
    (
        CLUSTER,
        "namespaces.0.workloads.1.sidecarVersion",
        "",
        "namespaces[0].workloads[1].sidecarVersion: must be",
    ),
    (CLUSTER, "faults.0.jobType", "Explode", "faults[0].jobType: unknown job type Explode (known: PreCheck,"),
    (CLUSTER, "faults.0.jobType", "Wait-Ready", "faults[0].jobType: must be 1-48 letters"),
    (CLUSTER, "faults.0.times", 0, "faults[0].times: must be at least 1"),
    (CLUSTER, "faults.0.reason", " ", "faults[0].reason: must not be empty"),
    (CLUSTER, "faults.0.reason", DELETE, "faults[0].reason: is required"),
    (
        CLUSTER,
        "installedAt",
        datetime(2026, 1, 1),
        "installedAt: must be plain data; put dates and times in quotes",
    ),
    (CLUSTER, "load", float("nan"), "load: must be a finite number"),
    (
        MESH,
        "name",
        "abc",
        "name: must be 4-64 characters of a-z, 0-9 and -, start with a letter and not end with -",
    ),
    (MESH, "name", "1mesh", "name: must be 4-64 characters"),
    (MESH, "name", "mesh-", "name: must be 4-64 characters"),
    (MESH, "name", "Mesh-prod", "name: must be 4-64 characters"),
    (MESH, "id", "9B2F4C1E-0000-4000-8000-000000000001", "id: must be a lowercase UUID"),
    (MESH, "project", "eu-west-0", "project: unknown project eu-west-0"),
    (MESH, "project", DELETE, "project: is required"),
    (MESH, "version", "1.16.0-r1", "version: unsupported version 1.16.0-r1 (supported: "),
    (MESH, "version", DELETE, "version: is required"),
    (MESH, "enterpriseProjectId", "other", "enterpriseProjectId: unknown enterprise project other"),
    (
        MESH,
        "tags",
        {"_sys_owner": "x"},
        "tags._sys_owner: key must be 1-128 characters and not start with _sys_",
    ),
    (MESH, "tags", {"k" * 129: "x"}, f'tags["{"k" * 64}..."]: key must be 1-128 characters'),
    (MESH, "tags", {"team": "v" * 256}, "tags.team: must be at most 255 characters"),
    (MESH, "tags", [{"key": "a", "value": "b"}], "tags: must be a mapping, not a list"),
    (MESH, "clusters", [], "clusters: must name at least one cluster"),
    (MESH, "clusters", DELETE, "clusters: is required"),
    (MESH, "clusters", ["C1"], "clusters[0]: must be 1-64 characters of a-z, 0-9 and -"),
    (MESH, "clusters", ["c1", "c1"], "clusters[1]: cluster c1 listed twice"),
    (
        MESH,
        "enterpriseProjectID",
        EP,
        "enterpriseProjectID: unknown field (did you mean enterpriseProjectId?)",
    ),
    (CLUSTER, "namespace", [], "namespace: unknown field (did you mean namespaces?)"),
    (MESH, "phase", "Ready", "phase: must be one of Running, Creating, CreateFailed,"),
    (JOB, "uid", "job-1", "uid: must be a lowercase UUID"),
    (JOB, "subjobs.0.type", "Install", "subjobs[0].type: unknown job type Install"),
    (JOB, "type", DELETE, "type: is required"),
    (JOB, "type", "InstallControlPlane", "type: unknown root job type InstallControlPlane (known: PreCheck,"),
    (
        JOB,
        "subjobs.0.phase",
        "Done",
        "subjobs[0].phase: must be one of Initializing, Running, Success, Failed",
    ),
    (JOB, "phase", "Running", "phase: phase Running contradicts its subjobs (derived: Failed)"),
    (JOB, "reason", "boom", "reason: reason contradicts its subjobs"),
    (JOB, "startTime", T0, "startTime: is derived from the subjobs; give it on the leaves"),
    (JOB, "status", "x", "status: unknown field"),
    (JOB, "target", 3, "target: must be a string"),
    (JOB, "subjobs", {"type": "PreCheck"}, "subjobs: must be a list, not a mapping"),
    (
        JOB,
        "subjobs.0",
        {**_LEAF, "startTime": T0},
        "subjobs[0].startTime: not allowed for an Initializing job",
    ),
    (
        JOB,
        "subjobs.0",
        {**_LEAF, "phase": "Running", "completionTime": T0},
        "subjobs[0].completionTime: only allowed for Success or Failed jobs (phase is Running)",
    ),
    (
        JOB,
        "subjobs.0",
        {**_LEAF, "phase": "Success", "startTime": T1, "completionTime": T0},
        "subjobs[0].completionTime: must not be before startTime",
    ),
    (
        JOB,
        "subjobs.0",
        {**_LEAF, "phase": "Running", "creationTimestamp": T1, "startTime": "2026-01-01T00:00:00+00:00"},
        "subjobs[0].startTime: must not be before creationTimestamp",
    ),
    (JOB, "creationTimestamp", "2026-01-01", "creationTimestamp: must be an RFC 3339 timestamp"),
    (JOB, "subjobs.1.reason", "x" * 4097, "subjobs[1].reason: must be at most 4096 characters"),
]


def _replace(doc: dict[str, Any], where: str, value: object) -> None:
    target: Any = account(doc)
    *parents, last = where.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value


@pytest.mark.parametrize(
    ("entry", "where", "value", "expected"),
    RULES,
    ids=[f"{entry[0] or 'account'}.{where}={str(value)[:20]}" for entry, where, value, _ in RULES],
)
def test_rule(entry: tuple[str, str], where: str, value: object, expected: str) -> None:
    doc = example()
    _replace(doc, f"{entry[0]}.{where}" if entry[0] else where, value)
    wanted = f"{entry[1]}{'' if expected.startswith('[') else '.'}{expected}"
    found = errors(doc)
    assert any(error.startswith(wanted) for error in found), found


def _append(where: str, entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda doc: account(doc)[where].append(entry)


def _second_account(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["accounts"].append({"name": "other", **fields})


_MESH2 = {"name": "mesh-two", "project": "cn-north-4", "version": "1.15.7-r1", "clusters": ["c9"]}
_JOB_UID = "2d1c7a00-0000-4000-8000-000000000001"

# Duplicates and cross-references: (change, the exact error expected).
REFERENCES: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (
        _second_account(name="acme"),
        "accounts[1].name: duplicate account name acme (also at accounts[0].name)",
    ),
    (
        _second_account(id="5f0d9c3a6b1e4c2d8e7f60718293a4b5"),
        "accounts[1].id: duplicate account id 5f0d9c3a6b1e4c2d8e7f60718293a4b5 (also at accounts[0].id)",
    ),
    (
        _append("projects", {"name": "cn-north-4"}),
        "accounts[0].projects[1].name: duplicate project name cn-north-4 (also at accounts[0].projects[0].name)",
    ),
    (
        _second_account(projects=[{"name": "eu-west-0", "id": "0123456789abcdef0123456789abcdef"}]),
        "accounts[1].projects[0].id: duplicate project id 0123456789abcdef0123456789abcdef "
        "(also at accounts[0].projects[0].id)",
    ),
    (
        _append("enterpriseProjects", {"id": EP, "name": "other"}),
        f"accounts[0].enterpriseProjects[1].id: duplicate enterprise project id {EP} "
        "(also at accounts[0].enterpriseProjects[0].id)",
    ),
    (
        _append("users", {"name": "alice"}),
        "accounts[0].users[2].name: duplicate user name alice (also at accounts[0].users[1].name)",
    ),
    (
        _append("groups", {"name": "readers"}),
        "accounts[0].groups[1].name: duplicate group name readers (also at accounts[0].groups[0].name)",
    ),
    (
        _second_account(
            users=[{"name": "x", "accessKeys": [{"ak": "AKROOTEXAMPLE0000001", "sk": "12345678"}]}]
        ),
        "accounts[1].users[0].accessKeys[0].ak: duplicate access key AKROOTEXAMPLE0000001 "
        "(also at accounts[0].users[0].accessKeys[0].ak)",
    ),
    (
        _append("clusters", {"id": "c1", "kubernetesVersion": "1.28"}),
        "accounts[0].clusters[1].id: duplicate cluster id c1 (also at accounts[0].clusters[0].id)",
    ),
    (
        _append("meshes", {**_MESH2, "name": "mesh-prod"}),
        "accounts[0].meshes[1].name: duplicate mesh mesh-prod in project cn-north-4 "
        "(also at accounts[0].meshes[0].name)",
    ),
    (
        _append("meshes", {**_MESH2, "id": "9b2f4c1e-0000-4000-8000-000000000001"}),
        "accounts[0].meshes[1].id: duplicate mesh id 9b2f4c1e-0000-4000-8000-000000000001 "
        "(also at accounts[0].meshes[0].id)",
    ),
    (
        _append("meshes", {**_MESH2, "clusters": ["c1"]}),
        "accounts[0].meshes[1].clusters[0]: cluster c1 already belongs to mesh cn-north-4/mesh-prod "
        "(accounts[0].meshes[0])",
    ),
    (
        _append("meshes", {**_MESH2, "jobs": [{"uid": _JOB_UID, "type": "PreCheck"}]}),
        f"accounts[0].meshes[1].jobs[0].uid: duplicate job uid {_JOB_UID} "
        "(also at accounts[0].meshes[0].jobs[0].uid)",
    ),
    (
        _append("meshes", {**_MESH2, "project": "eu-west-0"}),
        "accounts[0].meshes[1].project: unknown project eu-west-0 (declare it in the account's projects)",
    ),
]


@pytest.mark.parametrize(("change", "expected"), REFERENCES, ids=[e.split(":")[0] for _, e in REFERENCES])
def test_reference_rule(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    doc = example()
    change(doc)
    assert expected in errors(doc)


def test_bad_declarations_are_reported_once() -> None:
    doc = example()
    account(doc)["enterpriseProjects"][0]["name"] = ""  # EP still declared: references to it are fine
    assert errors(doc) == [
        "accounts[0].enterpriseProjects[0].name: must be 1-64 characters without control characters"
    ]


def test_job_depth_limit() -> None:
    leaf: dict[str, Any] = {"type": "RestartWorkloads", "phase": "Success"}
    node = leaf
    for _ in range(6):
        node = {"type": "MigrateNamespace", "subjobs": [node]}
    node["type"] = "DataPlaneUpgrade"  # the root: 7 levels in all
    doc = example()
    account(doc)["meshes"][0]["jobs"] = [node]
    path = "accounts[0].meshes[0].jobs[0]" + ".subjobs[0]" * 5 + ".subjobs"
    assert f"{path}: job trees may be at most 6 levels deep" in errors(doc)
    node["subjobs"] = node["subjobs"][0]["subjobs"]  # 6 levels: fine
    assert parse_seed(doc).accounts[0].meshes[0].jobs[0].phase == "Success"


def test_job_tree_size_limit() -> None:
    doc = example()
    children = [{"type": "RestartWorkloads"} for _ in range(10_000)]
    account(doc)["meshes"][0]["jobs"] = [{"type": "DataPlaneUpgrade", "subjobs": children}]
    assert "accounts[0].meshes[0].jobs[0]: a job tree may have at most 10000 nodes" in errors(doc)


def test_list_limit() -> None:
    doc = example()
    account(doc)["users"] = [{"name": f"u{i}"} for i in range(10_001)]
    assert "accounts[0].users: must have at most 10000 entries" in errors(doc)


def test_top_level() -> None:
    assert errors([]) == ["(document): must be a mapping with an accounts list, not a list"]
    assert errors(None) == ["(document): must be a mapping with an accounts list, not null"]
    assert errors({}) == ["accounts: is required"]
    assert errors({"accounts": [], "users": []}) == ["users: unknown field"]
    assert errors({"accounts": "acme"}) == ["accounts: must be a list, not a string"]
    assert errors({"accounts": [3]}) == ["accounts[0]: must be a mapping, not a number"]
    assert errors({"accounts": [{"name": "a", 1: 2}]}) == ["accounts[0]: keys must be strings (found 1)"]
    assert parse_seed({"accounts": []}).accounts == ()


def test_all_errors_are_reported_with_paths() -> None:
    doc = example()
    acct = account(doc)
    acct["users"][1]["accessKeys"][0]["sk"] = "short"
    acct["clusters"][0]["id"] = "C1"
    acct["meshes"][0]["version"] = "0.0.1-r1"
    acct["meshes"][0]["jobs"][0]["phase"] = "Success"
    with pytest.raises(SeedError) as info:
        parse_seed(doc)
    found = info.value.errors
    assert "accounts[0].users[1].accessKeys[0].sk: must be 8-128 printable characters" in found
    assert "accounts[0].clusters[0].id: must be 1-64 characters of a-z, 0-9 and -" in found
    assert any(e.startswith("accounts[0].meshes[0].version: unsupported version 0.0.1-r1") for e in found)
    assert (
        "accounts[0].meshes[0].jobs[0].phase: phase Success contradicts its subjobs (derived: Failed)"
        in found
    )
    assert len(found) == 4
    assert str(info.value) == "\n".join(found)
    assert isinstance(info.value, ValueError)


def test_errors_never_show_secrets() -> None:
    doc = example()
    acct = account(doc)
    acct["users"][1]["password"] = "pw\x01pw\x01pw\x01"
    acct["users"][1]["accessKeys"][1]["sk"] = "S3CRET\x00\x00\x00\x00"
    acct["users"][1]["accessKeys"][1]["securityToken"] = "T0KEN\x00"
    message = "\n".join(errors(doc))
    assert "pw" not in message and "S3CRET" not in message and "T0KEN" not in message
    key = parse_seed(example()).accounts[0].users[1].access_keys[1]
    user = parse_seed(example()).accounts[0].users[1]
    assert key.sk not in repr(key) and "tok-alice" not in repr(key)
    assert "Alice-Passw0rd!" not in repr(user) and key.sk not in repr(user)


def test_seed_error_pickles() -> None:
    error = SeedError(["a: x", "b: y"])
    again = pickle.loads(pickle.dumps(error))
    assert again.errors == ["a: x", "b: y"] and str(again) == "a: x\nb: y"


def test_input_is_not_shared_with_the_result() -> None:
    doc = example()
    seed = parse_seed(doc)
    account(doc)["users"][1]["identityPolicies"][0]["Statement"].clear()
    assert seed.accounts[0].users[1].identity_policies[0]["Statement"]


# ------------------------------------------------------------------------------------------------
# Files


def test_load_yaml_and_json(tmp_path: Path) -> None:
    expected = parse_seed(example())
    for name in ("seed.yaml", "seed.YML"):
        path = tmp_path / name
        path.write_text(EXAMPLE, encoding="utf-8")
        assert load_seed(path) == expected
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(example()), encoding="utf-8")
    assert load_seed(str(path)) == expected


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text("accounts = []")
    assert errors_of_file(path) == [f"{path}: unsupported file type .toml; use .yaml, .yml or .json"]
    bare = tmp_path / "seed"
    bare.write_text("accounts: []")
    assert "unsupported file type (no extension)" in errors_of_file(bare)[0]


def errors_of_file(path: Path) -> list[str]:
    with pytest.raises(SeedError) as info:
        load_seed(path)
    return info.value.errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    (message,) = errors_of_file(path)
    assert message.startswith(f"{path}: cannot read: ")


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("accounts:\n  - name: acme\n    projects: [a, b\n")
    (message,) = errors_of_file(path)
    assert message.startswith(f"{path}: invalid YAML at line 4, column 1:")


def test_yaml_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("accounts:\n  - name: acme\n    name: other\n")
    assert errors_of_file(path) == [f"{path}: invalid YAML at line 3, column 5: found duplicate key 'name'"]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        "x: &base {kubernetesVersion: '1.28', status: Available}\n"
        "accounts: [{name: a, clusters: [{<<: *base, id: c1, status: Unavailable}]}]\n"
    )
    assert errors_of_file(path) == ["x: unknown field"]
    path.write_text("accounts: [{name: a, clusters: [{<<: {kubernetesVersion: '1.28'}, id: c1}]}]\n")
    assert load_seed(path).accounts[0].clusters[0].kubernetes_version == "1.28"


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("accounts: !!python/object/apply:os.system ['echo hacked']\n")
    (message,) = errors_of_file(path)
    assert message.startswith(f"{path}: invalid YAML at line 1, column 11:")


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text('{"accounts": [\n  {"name": "acme",}\n]}')
    (message,) = errors_of_file(path)
    assert message.startswith(f"{path}: invalid JSON at line 2, column 19:")
    path.write_text('{"accounts": [], "accounts": []}')
    assert errors_of_file(path) == [f"{path}: invalid JSON: duplicate key 'accounts'"]
    path.write_text('{"accounts": [{"name": NaN}]}')
    assert errors_of_file(path) == [f"{path}: invalid JSON: NaN is not valid JSON"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_bytes(b"accounts: [\xff]")
    assert errors_of_file(path) == [f"{path}: not UTF-8 text (byte 11)"]


def test_empty_yaml(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("# nothing\n")
    assert errors_of_file(path) == ["(document): must be a mapping with an accounts list, not null"]


def test_alias_bomb_fails_cleanly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = tmp_path / "seed.yaml"
    path.write_text("\n".join([*lines, "accounts: []"]) + "\n")
    assert errors_of_file(path) == ["(document): more than 1000000 values"]


def test_recursive_yaml_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("accounts: &a [*a]\n")
    assert errors_of_file(path) == ["(document): nested more than 64 levels deep"]


def test_deep_json_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    (message,) = errors_of_file(path)
    assert message.startswith(f"{path}: invalid JSON")


def test_example_is_not_mutated_by_parsing() -> None:
    doc = example()
    before = copy.deepcopy(doc)
    parse_seed(doc)
    assert doc == before
