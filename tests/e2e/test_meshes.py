"""The mesh API end to end (asm-api.md §6): a real ``meshup serve`` per database backend, driven by
the official SDK's own mesh methods (``create_mesh``, ``show_mesh``, ``list_meshes``,
``delete_mesh``), by ``call_api`` for what the SDK has no method or model field for (PUT, the
upgrade API, ``enterpriseProjectId``, bodies the SDK model cannot express), and by a Keystone token
with plain httpx.

Each test owns the meshes and clusters it creates (names and cluster ids are unique in the file),
so the tests share one server per backend (``meshes_seed.yaml``, simulated clusters take no time).
A second server without engine workers keeps every mesh it creates in ``Creating``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from huaweicloudsdkasm.v1.model import (
    AccessLogging,
    Aom,
    CreateMeshRequest,
    DeleteMeshRequest,
    FieldSelector,
    InjectionConfig,
    InstallationConfig,
    ListMeshesRequest,
    LtsConfig,
    Mesh,
    MeshCluster,
    MeshConfig,
    MeshExtendParams,
    MeshMetadata,
    MeshSpec,
    MeshTags,
    Metric,
    ProxyConfig,
    Selector,
    ShowMeshRequest,
    TelemetryConfig,
    Tracing,
    TracingExtensionProvider,
    ZipkinTracingProvider,
)
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization

from meshup.store import tables
from tests.conftest import backends
from tests.support.clients import asm_client, call_json, keystone_token
from tests.support.server import ServerProcess, serve_backend
from tests.support.wire import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, REQUEST_ID, TIMESTAMP, UUID4

pytestmark = pytest.mark.e2e

SEED = Path(__file__).with_name("meshes_seed.yaml")
PROJECT = "0bb2cc3dd4ee5ff6a7b8c9d0e1f2a3b4"
EU_PROJECT = "1cc3dd4ee5ff6a7b8c9d0e1f2a3b4c5d"
DOMAIN = "meshers"
ROOT_USER, ROOT_PASSWORD = "mesh-admin", "MeshAdmin-Passw0rd!"
KEYS = {
    "root": ("AKMESHROOT0000000001", "MeshRootSecretKeyExample0000000000000001"),
    "paula": ("AKMESHPAULA000000001", "MeshPaulaSecretKeyExample000000000000001"),
    "lena": ("AKMESHLENA0000000001", "MeshLenaSecretKeyExample0000000000000001"),
    "gwen": ("AKMESHGWEN0000000001", "MeshGwenSecretKeyExample0000000000000001"),
    "dirk": ("AKMESHDIRK0000000001", "MeshDirkSecretKeyExample0000000000000001"),
    "nina": ("AKMESHNINA0000000001", "MeshNinaSecretKeyExample0000000000000001"),
}
EP_PAY = "8d2f1c3b-0000-4000-8000-000000000001"
EP_SHOP = "8d2f1c3b-0000-4000-8000-000000000002"
MESH_PAY = "6c3d0000-0000-4000-8000-000000000001"  # team=payments, EP payments, cluster pay1
MESH_SHOP = "6c3d0000-0000-4000-8000-000000000002"  # team=shop, EP shop
MESH_DIRK = "6c3d0000-0000-4000-8000-000000000003"  # team=payments, deleted by dirk
MESH_EU = "6c3d0000-0000-4000-8000-000000000004"  # in project eu-west-0, cluster eu1
MISSING = "00000000-0000-4000-8000-00000000dead"

SOURCE, TARGET = "1.15.7-r1", "1.18.7-r5"
MESHES = "/v1/{project_id}/meshes"
MESH = "/v1/{project_id}/meshes/{mesh_id}"
TASKS = "/v1/{project_id}/mesh-upgrade"
TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
JOB = "/v1/{project_id}/mesh-job/{job_id}"

WAIT = 20.0
POLL = 0.05


# --- servers ---------------------------------------------------------------------------------------


def _serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]
) -> Iterator[ServerProcess]:
    yield from serve_backend(str(request.param), tmp_path_factory, name, SEED, args)


@pytest.fixture(scope="module", params=backends())
def mesh_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Simulated clusters take no time: a mesh's job ends as fast as the workers run it."""
    yield from _serve(request, tmp_path_factory, "meshes", ["--sim-speed", "0", "--workers", "2"])


@pytest.fixture(scope="module", params=backends())
def idle_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """No engine workers: a created mesh stays Creating for as long as the test needs."""
    yield from _serve(request, tmp_path_factory, "meshes-idle", ["--sim-speed", "0", "--no-worker"])


# --- clients -----------------------------------------------------------------------------------------


class Sdk:
    """One user's AK/SK-signed official SDK client: the SDK's own mesh methods, call_api for the rest."""

    def __init__(self, server: ServerProcess, who: str, project: str = PROJECT) -> None:
        ak, sk = KEYS[who]
        self.server = server
        self.client = asm_client(server.url, ak, sk, project)

    def create(self, body: Mesh) -> Any:
        return self.client.create_mesh(CreateMeshRequest(body=body))

    def show(self, mesh_id: str) -> Any:
        return self.client.show_mesh(ShowMeshRequest(mesh_id=mesh_id))

    def list(self) -> Any:
        return self.client.list_meshes(ListMeshesRequest())

    def delete(self, mesh_id: str) -> Any:
        return self.client.delete_mesh(DeleteMeshRequest(mesh_id=mesh_id))

    def call(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        return call_json(self.client, method, path, params, body)

    def raw_show(self, mesh_id: str) -> dict[str, Any]:
        status, mesh = self.call("GET", MESH, {"mesh_id": mesh_id})
        assert status == 200
        return mesh

    def raw_create(self, body: dict[str, Any]) -> dict[str, Any]:
        status, mesh = self.call("POST", MESHES, body=body)
        assert status == 201
        return mesh

    def put(self, mesh_id: str, body: Any) -> dict[str, Any]:
        status, mesh = self.call("PUT", MESH, {"mesh_id": mesh_id}, body)
        assert status == 200
        return mesh

    def job(self, job_id: str) -> dict[str, Any]:
        status, job = self.call("GET", JOB, {"job_id": job_id})
        assert status == 200
        return job

    def wait_phase(self, mesh_id: str, *phases: str) -> Any:
        """Poll show_mesh until the mesh reaches one of ``phases``; the SDK model of that answer."""
        deadline = time.monotonic() + WAIT
        while True:
            mesh = self.show(mesh_id)
            if mesh.status.phase in phases:
                return mesh
            assert time.monotonic() < deadline, f"mesh {mesh_id} still {mesh.status.phase}"
            time.sleep(POLL)

    def wait_gone(self, mesh_id: str) -> ClientRequestException:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                mesh = self.show(mesh_id)
            except ClientRequestException as error:
                return error
            assert mesh.status.phase == "Deleting", self.raw_show(mesh_id)["status"]
            assert time.monotonic() < deadline, f"mesh {mesh_id} still there"
            time.sleep(POLL)

    def wait_job(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            job = self.job(job_id)
            if job["status"]["phase"] in ("Success", "Failed"):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']['phase']}"
            time.sleep(POLL)


def refused(call: Callable[..., Any], *args: Any) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        call(*args)
    return info.value


def logged(server: ServerProcess, request_id: str, status: int) -> None:
    """The request id the client saw is the one the server wrote to its access log, with the status."""
    deadline = time.monotonic() + 5
    needle = f'"requestId":"{request_id}"'
    while True:
        lines = [line for line in server.log().splitlines() if needle in line]
        if lines:
            assert len(lines) == 1 and f'"status":{status}' in lines[0], lines
            return
        assert time.monotonic() < deadline, f"request {request_id} is not in the access log"
        time.sleep(0.05)


def expect(
    server: ServerProcess, error: ClientRequestException, status_and_code: tuple[int, str], *says: str
) -> ClientRequestException:
    assert (error.status_code, error.error_code) == status_and_code, error.error_msg
    for fragment in says:
        assert fragment in error.error_msg, (fragment, error.error_msg)
    assert REQUEST_ID.match(error.request_id or ""), error.request_id
    logged(server, error.request_id, error.status_code)
    return error


def stamp(value: Any) -> str:
    """An SDK timestamp: a string (no python-dateutil installed) or a datetime, as RFC 3339."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert isinstance(value, str) and TIMESTAMP.match(value), value
    return value


# --- mesh bodies -------------------------------------------------------------------------------------


def full_config(sampling: float = 12.5) -> MeshConfig:
    """A MeshConfig with every field of the SDK model set."""
    return MeshConfig(
        proxy_config=ProxyConfig(
            include_ip_ranges="10.0.0.0/8,172.16.0.0/12",
            exclude_ip_ranges="10.247.0.0/16",
            exclude_outbound_ports="3306,6379",
            exclude_inbound_ports="8081",
            include_outbound_ports="80,443",
            include_inbound_ports="*",
        ),
        telemetry_config=TelemetryConfig(
            metrics=Metric(aom=[Aom(instance_id="aom-instance-1")]),
            access_logging=AccessLogging(lts=[LtsConfig(log_group_id="group-1", log_stream_id="stream-1")]),
            tracing=Tracing(
                random_sampling_percentage=sampling,
                default_providers=["zipkin-main"],
                extension_providers=[
                    TracingExtensionProvider(
                        name="zipkin-main",
                        zipkin=ZipkinTracingProvider(
                            service="zipkin.monitoring.svc.cluster.local", port=9411
                        ),
                    )
                ],
            ),
        ),
    )


def selector(key: str, *values: str) -> Selector:
    return Selector(field_selector=FieldSelector(key=key, operator="In", values=list(values)))


def sdk_mesh(
    name: str,
    clusters: list[str],
    *,
    mesh_type: str = "InCluster",
    version: str = SOURCE,
    tags: list[tuple[str, str]] | None = None,
) -> Mesh:
    return Mesh(
        api_version="v1",
        kind="Mesh",
        metadata=MeshMetadata(name=name),
        spec=MeshSpec(
            type=mesh_type,
            version=version,
            extend_params=MeshExtendParams(clusters=[MeshCluster(cluster_id=c) for c in clusters]),
            tags=[MeshTags(key=k, value=v) for k, v in (tags or [])],
        ),
    )


def raw_mesh(
    name: str,
    clusters: list[str],
    *,
    tags: list[tuple[str, str]] | None = None,
    enterprise_project: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    extend: dict[str, Any] = {"clusters": [{"clusterID": c} for c in clusters]}
    if enterprise_project is not None:
        extend["enterpriseProjectId"] = enterprise_project
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Mesh",
        "metadata": {"name": name},
        "spec": {"type": "InCluster", "version": SOURCE, "extendParams": extend, **spec},
    }
    if tags is not None:
        body["spec"]["tags"] = [{"key": k, "value": v} for k, v in tags]
    return body


def unset_fields(model: Any, path: str = "") -> list[str]:
    """Paths of the SDK model attributes (recursively, through lists) that the answer left None."""
    if isinstance(model, list):
        return [p for i, item in enumerate(model) for p in unset_fields(item, f"{path}[{i}]")]
    if not hasattr(model, "openapi_types"):
        return []
    found: list[str] = []
    for attr in model.openapi_types:
        where = f"{path}.{attr}" if path else attr
        value = getattr(model, attr)
        found += [where] if value is None else unset_fields(value, where)
    return found


def tag_map(mesh: Any) -> dict[str, str]:
    return {tag.key: tag.value for tag in mesh.spec.tags or []}


# --- (1) the official SDK: the whole life of a mesh ------------------------------------------------


def test_sdk_mesh_lifecycle_with_upgrade(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    sent = Mesh(
        api_version="v1",
        kind="Mesh",
        metadata=MeshMetadata(
            name="mesh-sdk",
            annotations={"owner": "platform-team", "example.com/ticket": "OPS-42"},
            labels={"env": "prod", "tier": "gold"},
        ),
        spec=MeshSpec(
            type="InCluster",
            version=SOURCE,
            extend_params=MeshExtendParams(
                clusters=[
                    MeshCluster(
                        cluster_id="sdk-c1",
                        installation=InstallationConfig(
                            nodes=selector("kubernetes.io/hostname", "node-1", "node-2")
                        ),
                        injection=InjectionConfig(namespaces=selector("name", "default", "shop")),
                    ),
                    MeshCluster(
                        cluster_id="sdk-c2",
                        installation=InstallationConfig(nodes=selector("node.kubernetes.io/role", "mesh")),
                    ),
                ]
            ),
            ipv6_enable=True,
            tags=[MeshTags(key="team", value="platform"), MeshTags(key="cost-center", value="")],
            config=full_config(),
        ),
    )

    created = root.create(sent)
    assert created.status_code == 201
    assert (created.api_version, created.kind) == ("v1", "Mesh")
    assert created.status.phase == "Creating"
    mesh_id = created.metadata.uid
    assert UUID4.match(mesh_id)
    assert created.metadata.name == "mesh-sdk"
    assert created.metadata.annotations == sent.metadata.annotations
    assert created.metadata.labels == sent.metadata.labels
    created_at = stamp(created.metadata.creation_timestamp)
    assert stamp(created.status.update_timestamp) >= created_at
    # Every field of the SDK model is populated (injection only where given), and the spec comes
    # back as sent, down to the tracing provider's port.
    for answer in (created.metadata, created.spec, created.status):
        assert answer is not None
    assert unset_fields(Mesh(**{a: getattr(created, a) for a in Mesh.openapi_types})) == [
        "spec.extend_params.clusters[1].injection"
    ]
    assert created.spec.to_dict() == sent.spec.to_dict()

    running = root.wait_phase(mesh_id, "Running", "CreateFailed")
    assert running.status.phase == "Running"
    assert running.metadata.uid == mesh_id and running.metadata.name == "mesh-sdk"
    assert stamp(running.metadata.creation_timestamp) == created_at
    assert stamp(running.status.update_timestamp) >= created_at
    assert running.metadata.to_dict() == created.metadata.to_dict()
    assert running.spec.to_dict() == sent.spec.to_dict()
    assert unset_fields(Mesh(**{a: getattr(running, a) for a in Mesh.openapi_types})) == [
        "spec.extend_params.clusters[1].injection"
    ]
    # The meshup extensions, which the SDK model drops, are on the wire.
    raw = root.raw_show(mesh_id)
    assert raw["spec"]["extendParams"]["enterpriseProjectId"] == "0"
    assert raw["status"]["reason"] == ""

    listed = root.list()
    assert listed.status_code == 200
    assert (listed.api_version, listed.kind) == ("v1", "MeshList")
    mine = [item for item in listed.items if item.metadata.uid == mesh_id]
    assert len(mine) == 1
    assert unset_fields(mine[0]) == ["spec.extend_params.clusters[1].injection"]
    for part in ("metadata", "spec", "status"):
        assert getattr(mine[0], part).to_dict() == getattr(running, part).to_dict()
    assert {MESH_PAY, MESH_SHOP} <= {item.metadata.uid for item in listed.items}

    # Conflicts: the name in the project, a cluster of this mesh.
    expect(
        mesh_server,
        refused(root.create, sdk_mesh("mesh-sdk", ["sdk-c9"])),
        CONFLICT,
        "mesh-sdk",
        "already exists",
    )
    expect(
        mesh_server,
        refused(root.create, sdk_mesh("mesh-sdk-two", ["sdk-c9", "sdk-c2"])),
        CONFLICT,
        "cluster sdk-c2 already belongs to mesh",
        mesh_id,
    )
    expect(mesh_server, refused(root.create, sdk_mesh("mesh-sdk-pay", ["pay1"])), CONFLICT, "pay1", MESH_PAY)

    # The canary upgrade through call_api, each step's job polled until it ends.
    status, task = root.call(
        "POST",
        TASKS,
        body={
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": "sdk-to-1-18"},
            "spec": {
                "meshId": mesh_id,
                "upgradeStrategy": "Canary",
                "targetVersion": TARGET,
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        },
    )
    assert status == 201
    task_id = task["metadata"]["uid"]
    job = root.wait_job(task["status"]["jobId"])
    assert (job["spec"]["type"], job["status"]["phase"]) == ("PreCheck", "Success"), job["status"]
    expect(
        mesh_server, refused(root.delete, mesh_id), CONFLICT, "active upgrade task", task_id
    )  # even after nothing but a pre-check
    for step in ("ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete"):
        status, task = root.call(
            "PUT",
            TASK,
            {"mesh_upgrade_id": task_id},
            {"kind": "MeshUpgrade", "apiVersion": "v1", "spec": {"currentStep": {"step": step}}},
        )
        assert status == 200 and task["status"]["step"] == step
        if step == "ControlPlaneUpgrade":
            assert root.show(mesh_id).status.phase in ("Upgrading", "Running")
            expect(mesh_server, refused(root.delete, mesh_id), CONFLICT, "active upgrade task")
        job = root.wait_job(task["status"]["jobId"])
        assert (job["spec"]["type"], job["status"]["phase"]) == (step, "Success"), job["status"]
    status, task = root.call("GET", TASK, {"mesh_upgrade_id": task_id})
    assert task["status"]["phase"] == "Completed"
    upgraded = root.wait_phase(mesh_id, "Running")
    assert upgraded.spec.version == TARGET
    assert stamp(upgraded.status.update_timestamp) >= stamp(running.status.update_timestamp)
    expected_spec = sent.spec.to_dict() | {"version": TARGET}
    assert upgraded.spec.to_dict() == expected_spec

    # PUT {"config": ...} replaces the configuration; show_mesh echoes it.
    new_config = full_config(sampling=100.0)
    new_config.proxy_config.include_ip_ranges = "*"
    updated = root.put(mesh_id, {"config": sanitize_for_serialization(new_config)})
    assert updated["spec"]["config"]["proxyConfig"]["includeIPRanges"] == "*"
    assert updated["spec"]["config"]["telemetryConfig"]["tracing"]["randomSamplingPercentage"] == 100.0
    shown = root.show(mesh_id)
    assert shown.spec.config.to_dict() == new_config.to_dict()
    assert shown.spec.to_dict() == expected_spec | {"config": new_config.to_dict()}
    assert shown.metadata.to_dict() == created.metadata.to_dict()

    # Delete: Deleting at once, then 404.
    deleting = root.delete(mesh_id)
    assert deleting.status_code == 200
    assert deleting.status.phase == "Deleting"
    assert deleting.metadata.uid == mesh_id
    gone = root.wait_gone(mesh_id)
    expect(mesh_server, gone, NOT_FOUND, mesh_id)
    assert mesh_id not in {item.metadata.uid for item in root.list().items}
    expect(mesh_server, refused(root.delete, mesh_id), NOT_FOUND, mesh_id)
    # The namespaces the upgrade moved to the new revision were reverted before its uninstallation.
    removal = root.job(lifecycle_job_id(mesh_server, mesh_id, "DeleteMesh"))
    assert removal["status"]["phase"] == "Success"
    assert [(c["spec"]["type"], c["spec"]["target"]) for c in removal["spec"]["subjobs"]] == [
        (step, f"cluster {cluster}")
        for cluster in ("sdk-c1", "sdk-c2")
        for step in ("RemoveGateways", "RevertNamespaces", "UninstallControlPlane")
    ]
    # The upgrade task's jobs stay queryable after the mesh is gone (asm-api.md §5).
    assert root.job(task["status"]["jobId"])["status"]["phase"] == "Success"

    # The name and the clusters are free again.
    again = root.create(sdk_mesh("mesh-sdk", ["sdk-c1", "sdk-c2"]))
    assert again.status.phase == "Creating" and again.metadata.uid != mesh_id
    assert root.wait_phase(again.metadata.uid, "Running", "CreateFailed").status.phase == "Running"


# --- (1) 400 / 404 / 409 through the SDK --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(sdk_mesh("Bad_Name", ["bad-c1"]), "metadata.name", id="uppercase-and-underscore"),
        pytest.param(sdk_mesh("abc", ["bad-c1"]), "metadata.name", id="too-short"),
        pytest.param(sdk_mesh("mesh-", ["bad-c1"]), "metadata.name", id="ends-with-dash"),
        pytest.param(sdk_mesh("1mesh", ["bad-c1"]), "metadata.name", id="starts-with-digit"),
        pytest.param(sdk_mesh("m" * 65, ["bad-c1"]), "metadata.name", id="too-long"),
        pytest.param(sdk_mesh("mesh-bad", ["bad-c1"], mesh_type="Remote"), "spec.type", id="type"),
        pytest.param(sdk_mesh("mesh-bad", ["bad-c1"], version="1.99.0-r1"), "spec.version", id="version"),
        pytest.param(sdk_mesh("mesh-bad", []), "spec.extendParams.clusters", id="no-clusters"),
        pytest.param(
            sdk_mesh("mesh-bad", ["bad-c1", "bad-c2", "bad-c1"]),
            "spec.extendParams.clusters[2].clusterID",
            id="duplicate-cluster",
        ),
        pytest.param(
            sdk_mesh("mesh-bad", ["bad-c1"], tags=[("_sys_owner", "x")]), "spec.tags[0].key", id="sys-tag"
        ),
        pytest.param(
            sdk_mesh("mesh-bad", ["bad-c1"], tags=[("team", "x" * 256)]), "spec.tags[0].value", id="long-tag"
        ),
    ],
)
def test_sdk_create_rejects_invalid_meshes(mesh_server: ServerProcess, body: Mesh, says: str) -> None:
    root = Sdk(mesh_server, "root")
    expect(mesh_server, refused(root.create, body), INVALID, says)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(raw_mesh("mesh-bad", ["bad-c1"], ipv6Enable="yes"), "spec.ipv6Enable", id="ipv6-string"),
        pytest.param(raw_mesh("mesh-bad", ["bad-c1"], ipv6Enable=1), "spec.ipv6Enable", id="ipv6-number"),
        pytest.param(
            raw_mesh("mesh-bad", ["bad-c1"], tags=[("team", "y" * 256)]), "spec.tags[0].value", id="long-tag"
        ),
        pytest.param(raw_mesh("mesh-bad", ["bad-c1"], tags=[("", "v")]), "spec.tags[0].key", id="empty-key"),
        pytest.param(
            raw_mesh("mesh-bad", ["bad-c1"], tags=[("k" * 129, "v")]), "spec.tags[0].key", id="long-key"
        ),
        pytest.param({"apiVersion": "v1", "kind": "Mesh", "spec": {}}, "metadata", id="no-metadata"),
        pytest.param({**raw_mesh("mesh-bad", ["bad-c1"]), "kind": "MeshUpgrade"}, "kind", id="kind"),
        pytest.param(
            raw_mesh("mesh-bad", ["bad-c1"], enterprise_project="no-such-ep"),
            "spec.extendParams.enterpriseProjectId",
            id="unknown-enterprise-project",
        ),
        pytest.param(
            raw_mesh("mesh-bad", ["bad-c1"], config={"proxyConfig": "all"}),
            "spec.config.proxyConfig",
            id="config",
        ),
    ],
)
def test_raw_create_rejects_what_the_sdk_model_cannot_express(
    mesh_server: ServerProcess, body: dict[str, Any], says: str
) -> None:
    root = Sdk(mesh_server, "root")
    expect(mesh_server, refused(root.call, "POST", MESHES, None, body), INVALID, says)


def test_invalid_creates_left_nothing_behind(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    names = {item.metadata.name for item in root.list().items}
    assert "mesh-bad" not in names
    # bad-c1 was named by every refused request; it belongs to no mesh.
    made = root.create(sdk_mesh("mesh-after-bad", ["bad-c1"]))
    assert root.wait_phase(made.metadata.uid, "Running", "CreateFailed").status.phase == "Running"


def test_unknown_mesh_is_404(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    for call in (root.show, root.delete):
        expect(mesh_server, refused(call, MISSING), NOT_FOUND, MISSING)
    expect(
        mesh_server,
        refused(root.call, "PUT", MESH, {"mesh_id": MISSING}, {"config": {}}),
        NOT_FOUND,
        MISSING,
    )
    expect(mesh_server, refused(root.show, "not-a-uuid"), NOT_FOUND)


def test_meshes_of_another_project_are_invisible(mesh_server: ServerProcess) -> None:
    root, eu = Sdk(mesh_server, "root"), Sdk(mesh_server, "root", EU_PROJECT)
    for call in (root.show, root.delete):
        expect(mesh_server, refused(call, MESH_EU), NOT_FOUND, MESH_EU)
    expect(mesh_server, refused(root.call, "PUT", MESH, {"mesh_id": MESH_EU}, {"config": {}}), NOT_FOUND)
    assert MESH_EU not in {item.metadata.uid for item in root.list().items}
    assert [item.metadata.uid for item in eu.list().items] == [MESH_EU]
    assert eu.show(MESH_EU).metadata.name == "mesh-eu"
    expect(mesh_server, refused(eu.show, MESH_PAY), NOT_FOUND, MESH_PAY)
    # Names are per project; clusters are the account's, whatever the project.
    made = eu.create(sdk_mesh("mesh-pay", ["eu-c2"]))
    assert eu.wait_phase(made.metadata.uid, "Running", "CreateFailed").status.phase == "Running"
    expect(mesh_server, refused(eu.create, sdk_mesh("mesh-eu-two", ["pay1"])), CONFLICT, "pay1")
    assert root.show(MESH_PAY).metadata.name == "mesh-pay"


def test_put_changes_the_config_only(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    before = root.raw_show(MESH_SHOP)
    for body, says in [
        ({"config": {}, "metadata": {"name": "renamed"}}, "metadata"),
        ({"spec": {"version": TARGET}}, "spec"),
        ({"config": {"proxyConfig": {}}, "status": {"phase": "Running"}}, "status"),
        ({}, "config: required"),
        ({"config": {"sidecar": {}}}, "config.sidecar"),
        ({"config": []}, "config"),
        (["config"], "body"),
    ]:
        expect(mesh_server, refused(root.call, "PUT", MESH, {"mesh_id": MESH_SHOP}, body), INVALID, says)
    assert root.raw_show(MESH_SHOP) == before  # nothing changed

    config = {
        "proxyConfig": {"excludeOutboundPorts": "9000"},
        "telemetryConfig": {"tracing": {"randomSamplingPercentage": 5}},
    }
    updated = root.put(MESH_SHOP, {"config": config})
    assert updated["spec"]["config"] == config
    assert updated["spec"]["version"] == before["spec"]["version"]
    assert updated["spec"]["tags"] == before["spec"]["tags"]
    assert updated["metadata"] == before["metadata"]
    assert updated["status"]["phase"] == "Running"
    assert updated["status"]["updateTimestamp"] >= before["status"]["updateTimestamp"]
    shown = root.show(MESH_SHOP)
    assert shown.spec.config.proxy_config.exclude_outbound_ports == "9000"
    assert shown.spec.config.telemetry_config.tracing.random_sampling_percentage == 5
    assert root.raw_show(MESH_SHOP)["spec"]["config"] == config
    # An empty configuration is a configuration too.
    assert root.put(MESH_SHOP, {"config": {}})["spec"]["config"] == {}


def test_delete_while_creating_is_409(idle_server: ServerProcess) -> None:
    root = Sdk(idle_server, "root")
    created = root.create(sdk_mesh("mesh-slow", ["slow-c1"]))
    assert created.status.phase == "Creating"
    mesh_id = created.metadata.uid
    expect(idle_server, refused(root.delete, mesh_id), CONFLICT, "mesh-slow", "Creating")
    assert root.show(mesh_id).status.phase == "Creating"
    # A task on a mesh that is not Running: 409 as well.
    task = {
        "kind": "MeshUpgrade",
        "apiVersion": "v1",
        "metadata": {"name": "too-early"},
        "spec": {
            "meshId": mesh_id,
            "upgradeStrategy": "Canary",
            "targetVersion": TARGET,
            "targetType": "InCluster",
            "currentStep": {"step": "PreCheck"},
        },
    }
    expect(idle_server, refused(root.call, "POST", TASKS, None, task), CONFLICT)
    # Its cluster is taken from the moment the mesh is accepted.
    expect(idle_server, refused(root.create, sdk_mesh("mesh-slow-two", ["slow-c1"])), CONFLICT, "slow-c1")
    # A mesh being deleted cannot be deleted again.
    assert root.delete(MESH_SHOP).status.phase == "Deleting"
    expect(idle_server, refused(root.delete, MESH_SHOP), CONFLICT, "mesh-shop", "Deleting")
    assert root.show(MESH_SHOP).status.phase == "Deleting"


# --- (2) creation failure ---------------------------------------------------------------------------


def lifecycle_job_id(server: ServerProcess, mesh_id: str, kind: str = "CreateMesh") -> str:
    """The uid of a mesh's CreateMesh (DeleteMesh) job, read from the server's database: a deleted
    mesh's document is gone, and the SDK's model drops the status.jobId extension."""
    engine = sa.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(tables.jobs.c.id).where(
                    tables.jobs.c.mesh_id == mesh_id,
                    tables.jobs.c.parent_id.is_(None),
                    tables.jobs.c.type == kind,
                )
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    return str(rows[0].id)


def test_failed_installation_ends_create_failed_with_the_reason(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    created = root.create(sdk_mesh("mesh-quota", ["quota1", "fresh-q2"]))
    assert created.status.phase == "Creating"
    mesh_id = created.metadata.uid
    failed = root.wait_phase(mesh_id, "Running", "CreateFailed")
    assert failed.status.phase == "CreateFailed"

    raw = root.raw_show(mesh_id)
    assert raw["status"]["phase"] == "CreateFailed"
    reason = "InstallControlPlane cluster quota1: quota exceeded"
    assert raw["status"]["reason"] == reason

    # The mesh document names its latest lifecycle job (status.jobId, a meshup extension).
    assert raw["status"]["jobId"] == lifecycle_job_id(mesh_server, mesh_id)
    job = root.job(raw["status"]["jobId"])
    assert (job["kind"], job["apiVersion"]) == ("Job", "v3")
    assert job["spec"]["type"] == "CreateMesh" and job["spec"]["target"] == "mesh mesh-quota"
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["reason"] == reason
    children = [
        (c["spec"]["type"], c["spec"]["target"], c["status"]["phase"]) for c in job["spec"]["subjobs"]
    ]
    assert children[:3] == [
        ("CheckClusterStatus", "cluster quota1", "Success"),
        ("CheckClusterVersion", "cluster quota1", "Success"),
        ("InstallControlPlane", "cluster quota1", "Failed"),
    ]
    assert {phase for _, _, phase in children[3:]} == {"Initializing"}  # nothing ran after the failure
    assert [(t, target) for t, target, _ in children[3:]] == [
        ("WaitControlPlaneReady", "cluster quota1"),
        ("InstallGateways", "cluster quota1"),
        *[(step, "cluster fresh-q2") for step in (
            "CheckClusterStatus", "CheckClusterVersion", "InstallControlPlane",
            "WaitControlPlaneReady", "InstallGateways",
        )],
    ]  # fmt: skip
    assert job["spec"]["subjobs"][2]["status"]["reason"] == "quota exceeded"

    # A mesh that failed to install can still be deleted; its clusters are then free.
    assert root.delete(mesh_id).status.phase == "Deleting"
    expect(mesh_server, root.wait_gone(mesh_id), NOT_FOUND)
    retried = root.create(sdk_mesh("mesh-quota", ["quota1", "fresh-q2"]))  # the fault fired once
    assert root.wait_phase(retried.metadata.uid, "Running", "CreateFailed").status.phase == "Running"


def test_unavailable_cluster_ends_create_failed(mesh_server: ServerProcess) -> None:
    root = Sdk(mesh_server, "root")
    created = root.create(sdk_mesh("mesh-down", ["down1"]))
    mesh_id = created.metadata.uid
    assert root.wait_phase(mesh_id, "Running", "CreateFailed").status.phase == "CreateFailed"
    raw = root.raw_show(mesh_id)
    assert raw["status"]["reason"].startswith("CheckClusterStatus cluster down1: ")
    assert "Unavailable" in raw["status"]["reason"]
    job = root.job(lifecycle_job_id(mesh_server, mesh_id))
    assert job["status"]["reason"] == raw["status"]["reason"]
    assert [c["status"]["phase"] for c in job["spec"]["subjobs"]][:2] == ["Failed", "Initializing"]


# --- (3) a Keystone token and plain HTTP -----------------------------------------------------------


def test_keystone_token_and_raw_http(mesh_server: ServerProcess) -> None:
    token, _ = keystone_token(mesh_server.url, ROOT_USER, ROOT_PASSWORD, DOMAIN, PROJECT)
    base = f"{mesh_server.url}/v1/{PROJECT}/meshes"
    with httpx.Client(headers={"X-Auth-Token": token}, timeout=10) as http:

        def call(method: str, url: str, body: Any = None) -> httpx.Response:
            response = http.request(method, url, json=body)
            assert REQUEST_ID.match(response.headers.get("X-Request-Id", "")), response.headers
            assert response.headers["content-type"].startswith("application/json")
            return response

        body = raw_mesh(
            "mesh-token",
            ["tok-c1"],
            tags=[("team", "payments")],
            enterprise_project=EP_PAY,
            ipv6Enable=False,
        )
        # Envelope kind "mesh" is accepted; what the server owns (uid, timestamps, status) and
        # unknown fields are ignored.
        body["kind"] = "mesh"
        body["metadata"].update(uid=MISSING, creationTimestamp="2000-01-01T00:00:00Z", owner="me")
        body["status"] = {"phase": "Running", "reason": "seeded"}
        body["spec"]["unknownField"] = {"x": 1}
        response = call("POST", base, body)
        assert response.status_code == 201, response.text
        mesh = response.json()
        mesh_id = mesh["metadata"]["uid"]
        creation_job = mesh["status"]["jobId"]
        assert UUID4.match(creation_job)
        assert (mesh["apiVersion"], mesh["kind"], mesh["status"]["phase"]) == ("v1", "Mesh", "Creating")
        assert UUID4.match(mesh_id) and mesh_id != MISSING
        assert mesh["metadata"]["creationTimestamp"] != "2000-01-01T00:00:00Z"
        assert "unknownField" not in mesh["spec"] and "owner" not in mesh["metadata"]
        assert mesh["spec"]["extendParams"] == {
            "clusters": [{"clusterID": "tok-c1"}],
            "enterpriseProjectId": EP_PAY,
        }
        assert mesh["spec"]["tags"] == [{"key": "team", "value": "payments"}]
        assert mesh["metadata"]["annotations"] == {} and mesh["metadata"]["labels"] == {}
        assert "config" not in mesh["spec"]  # none was given

        deadline = time.monotonic() + WAIT
        while mesh["status"]["phase"] == "Creating":
            assert time.monotonic() < deadline
            time.sleep(POLL)
            response = call("GET", f"{base}/{mesh_id}")
            assert response.status_code == 200
            mesh = response.json()
        assert mesh["status"] == {
            "phase": "Running",
            "updateTimestamp": mesh["status"]["updateTimestamp"],
            "jobId": creation_job,
            "reason": "",
        }
        assert TIMESTAMP.match(mesh["status"]["updateTimestamp"])

        listed = call("GET", base).json()
        assert (listed["apiVersion"], listed["kind"]) == ("v1", "MeshList")
        assert [item for item in listed["items"] if item["metadata"]["uid"] == mesh_id] == [mesh]
        # A trailing slash is the same path.
        assert call("GET", f"{base}/{mesh_id}/").json() == mesh

        duplicate = call("POST", base, raw_mesh("mesh-token", ["tok-c2"]))
        assert duplicate.status_code == 409
        assert duplicate.json()["errorCode"] == "ASM.01010003"
        assert "mesh-token" in duplicate.json()["errorMsg"]

        wrong_type = http.post(base, content=b"{}", headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 400 and wrong_type.json()["errorCode"] == "ASM.01010001"

        response = call("DELETE", f"{base}/{mesh_id}")
        assert response.status_code == 200
        assert response.json()["status"]["phase"] == "Deleting"
        deadline = time.monotonic() + WAIT
        while (response := call("GET", f"{base}/{mesh_id}")).status_code == 200:
            assert response.json()["status"]["phase"] == "Deleting"
            assert time.monotonic() < deadline
            time.sleep(POLL)
        assert response.status_code == 404
        assert response.json()["errorCode"] == "ASM.01010002"
        assert set(response.json()) == {"errorCode", "errorMsg"}
        assert mesh_id not in {item["metadata"]["uid"] for item in call("GET", base).json()["items"]}

        # No token, a token for another project: the gateway and the service refuse.
        anonymous = httpx.get(base)
        assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "APIGW.0301"
        assert anonymous.json()["request_id"] == anonymous.headers["X-Request-Id"]
        other = call("GET", f"{mesh_server.url}/v1/{'f' * 32}/meshes")
        assert other.status_code == 401 and other.json()["errorCode"] == "ASM.01000001"


# --- (4) IAM: create-time conditions ----------------------------------------------------------------


def test_create_conditions_on_enterprise_project_and_request_tags(mesh_server: ServerProcess) -> None:
    paula = Sdk(mesh_server, "paula")
    root = Sdk(mesh_server, "root")
    payments = [("team", "payments")]
    denied = [
        (raw_mesh("mesh-paula-x", ["paula-c9"], tags=payments, enterprise_project=EP_SHOP), "other EP"),
        (raw_mesh("mesh-paula-x", ["paula-c9"], tags=payments), "default EP"),
        (raw_mesh("mesh-paula-x", ["paula-c9"], tags=payments, enterprise_project="0"), "EP 0"),
        (raw_mesh("mesh-paula-x", ["paula-c9"], tags=[("team", "shop")], enterprise_project=EP_PAY), "tag"),
        (
            raw_mesh("mesh-paula-x", ["paula-c9"], tags=[("team", "Payments")], enterprise_project=EP_PAY),
            "case",
        ),
        (raw_mesh("mesh-paula-x", ["paula-c9"], enterprise_project=EP_PAY), "no tags"),
        (
            raw_mesh("mesh-paula-x", ["paula-c9"], tags=[("owner", "payments")], enterprise_project=EP_PAY),
            "key",
        ),
        (
            raw_mesh(
                "mesh-paula-x", ["paula-c9"], tags=[*payments, ("env", "prod")], enterprise_project=EP_PAY
            ),
            "extra tag key",
        ),
        (
            raw_mesh("mesh-paula-x", ["paula-c9"], tags=payments, enterprise_project="no-such-ep"),
            "unknown EP",
        ),
    ]
    for body, why in denied:
        error = refused(paula.call, "POST", MESHES, None, body)
        expect(mesh_server, error, FORBIDDEN, "asm:mesh:create", "implicit deny")
        assert error.status_code == 403, why
    # The root user is refused the unknown enterprise project as invalid input instead.
    expect(
        mesh_server,
        refused(root.call, "POST", MESHES, None, denied[-1][0]),
        INVALID,
        "spec.extendParams.enterpriseProjectId",
    )
    # An invalid body is 400 for a caller who may create some meshes (validation before conditions).
    expect(
        mesh_server,
        refused(paula.call, "POST", MESHES, None, raw_mesh("Bad_Name", ["paula-c9"])),
        INVALID,
        "metadata.name",
    )
    assert "mesh-paula-x" not in {item.metadata.name for item in root.list().items}

    made = paula.raw_create(raw_mesh("mesh-paula", ["paula-c1"], tags=payments, enterprise_project=EP_PAY))
    assert made["status"]["phase"] == "Creating"
    assert made["spec"]["extendParams"]["enterpriseProjectId"] == EP_PAY
    assert made["spec"]["tags"] == [{"key": "team", "value": "payments"}]
    # Creating is all paula may do: reading it back, listing, deleting are refused.
    expect(mesh_server, refused(paula.show, made["metadata"]["uid"]), FORBIDDEN, "asm:mesh:get")
    expect(mesh_server, refused(paula.list), FORBIDDEN, "asm:mesh:list")
    expect(mesh_server, refused(paula.delete, made["metadata"]["uid"]), FORBIDDEN, "asm:mesh:delete")
    assert root.wait_phase(made["metadata"]["uid"], "Running", "CreateFailed").status.phase == "Running"


# --- (4) IAM: list, show and delete per action --------------------------------------------------------


def test_list_shows_only_the_meshes_a_policy_allows(mesh_server: ServerProcess) -> None:
    lena, root = Sdk(mesh_server, "lena"), Sdk(mesh_server, "root")
    everything = root.list().items
    seen = lena.list()
    assert (seen.api_version, seen.kind) == ("v1", "MeshList")
    uids = [item.metadata.uid for item in seen.items]
    assert MESH_PAY in uids and MESH_SHOP not in uids
    expected = [item.metadata.uid for item in everything if tag_map(item).get("team") == "payments"]
    assert uids == expected
    assert all(tag_map(item)["team"] == "payments" for item in seen.items)
    # Listing is all lena may do.
    expect(mesh_server, refused(lena.show, MESH_PAY), FORBIDDEN, "asm:mesh:get")
    expect(mesh_server, refused(lena.call, "PUT", MESH, {"mesh_id": MESH_PAY}, {"config": {}}), FORBIDDEN)
    expect(
        mesh_server,
        refused(lena.create, sdk_mesh("mesh-lena", ["lena-c1"], tags=[("team", "payments")])),
        FORBIDDEN,
        "asm:mesh:create",
    )


def test_user_without_list_permission_is_403(mesh_server: ServerProcess) -> None:
    for who in ("nina", "gwen", "dirk"):
        expect(mesh_server, refused(Sdk(mesh_server, who).list), FORBIDDEN, "asm:mesh:list", "implicit deny")


def test_show_per_action_hides_existence_only_from_users_without_any_get_policy(
    mesh_server: ServerProcess,
) -> None:
    gwen = Sdk(mesh_server, "gwen")
    shown = gwen.show(MESH_PAY)
    assert shown.metadata.uid == MESH_PAY and tag_map(shown) == {"team": "payments"}
    expect(mesh_server, refused(gwen.show, MESH_SHOP), FORBIDDEN, "asm:mesh:get", MESH_SHOP)
    expect(mesh_server, refused(gwen.show, MISSING), NOT_FOUND, MISSING)  # gwen may get some meshes
    # gwen has no delete policy at all: 403 whether or not the mesh exists.
    for mesh_id in (MESH_PAY, MESH_SHOP, MISSING):
        expect(mesh_server, refused(gwen.delete, mesh_id), FORBIDDEN, "asm:mesh:delete")
    assert gwen.show(MESH_PAY).status.phase == "Running"

    nina = Sdk(mesh_server, "nina")
    for mesh_id in (MESH_PAY, MISSING, "not-a-uuid"):
        expect(mesh_server, refused(nina.show, mesh_id), FORBIDDEN, "asm:mesh:get")
        expect(mesh_server, refused(nina.delete, mesh_id), FORBIDDEN, "asm:mesh:delete")
        expect(
            mesh_server,
            refused(nina.call, "PUT", MESH, {"mesh_id": mesh_id}, {"config": {}}),
            FORBIDDEN,
            "asm:mesh:update",
        )
    # Without any create policy even an invalid body is 403: nothing about the input is revealed.
    expect(mesh_server, refused(nina.create, sdk_mesh("Bad_Name", [])), FORBIDDEN, "asm:mesh:create")


def test_delete_per_action(mesh_server: ServerProcess) -> None:
    dirk = Sdk(mesh_server, "dirk")
    root = Sdk(mesh_server, "root")
    # dirk has no get policy: 403 whether or not the mesh exists.
    for mesh_id in (MESH_DIRK, MISSING):
        expect(mesh_server, refused(dirk.show, mesh_id), FORBIDDEN, "asm:mesh:get")
    expect(mesh_server, refused(dirk.delete, MISSING), NOT_FOUND, MISSING)
    expect(mesh_server, refused(dirk.delete, MESH_SHOP), FORBIDDEN, "asm:mesh:delete", MESH_SHOP)
    assert root.show(MESH_SHOP).status.phase == "Running"
    deleting = dirk.delete(MESH_DIRK)
    assert deleting.status.phase == "Deleting" and deleting.metadata.uid == MESH_DIRK
    expect(mesh_server, root.wait_gone(MESH_DIRK), NOT_FOUND)
    expect(mesh_server, refused(dirk.delete, MESH_DIRK), NOT_FOUND)
