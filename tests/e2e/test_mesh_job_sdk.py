"""The mesh-job query through the official Huawei Cloud SDK (AK/SK signatures), as users call it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from tests.e2e.conftest import (
    EU_JOB,
    EU_PROJECT,
    KEYS,
    MISSING_JOB,
    OTHER_JOB,
    OTHER_PROJECT,
    PAY_JOB,
    PAY_LEAF_FAILED,
    PROJECT,
    SHOP_JOB,
)
from tests.support.clients import asm_client, get_mesh_job
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def client_for(server: ServerProcess, who: str, project: str = PROJECT, **kwargs: Any) -> Any:
    ak, sk = KEYS[who]
    return asm_client(server.url, ak, sk, project, **kwargs)


def refused(client: Any, job_id: str) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        get_mesh_job(client, job_id)
    return info.value


def check_node(node: dict[str, Any]) -> None:
    assert node["kind"] == "Job"
    assert node["apiVersion"] == "v3"
    assert set(node) == {"kind", "apiVersion", "metadata", "spec", "status"}
    assert set(node["metadata"]) == {"uid", "creationTimestamp", "updateTimestamp"}
    assert set(node["status"]) == {"phase", "reason", "startTime", "completionTime"}
    for stamp in (node["metadata"]["creationTimestamp"], node["metadata"]["updateTimestamp"]):
        assert TIMESTAMP.match(stamp)
    for stamp in (node["status"]["startTime"], node["status"]["completionTime"]):
        assert stamp == "" or TIMESTAMP.match(stamp)
    assert isinstance(node["spec"]["subjobs"], list)
    for child in node["spec"]["subjobs"]:
        check_node(child)


def test_root_reads_a_whole_job_tree(server: ServerProcess) -> None:
    status, job = get_mesh_job(client_for(server, "root"), PAY_JOB)
    assert status == 200
    check_node(job)
    assert job["metadata"]["uid"] == PAY_JOB
    assert job["spec"]["type"] == "ControlPlaneUpgrade"
    children = job["spec"]["subjobs"]
    assert [c["spec"]["type"] for c in children] == [
        "InstallControlPlane",
        "WaitControlPlaneReady",
        "InstallGateways",
    ]
    assert [c["status"]["phase"] for c in children] == ["Success", "Failed", "Initializing"]
    assert all(c["spec"]["subjobs"] == [] for c in children)
    # The parent is derived from its children and names the failing one.
    assert job["status"]["phase"] == "Failed"
    assert job["status"]["reason"] == "WaitControlPlaneReady cluster c1: istiod not ready after 300s"
    assert job["status"]["startTime"] == children[0]["status"]["startTime"]
    assert job["status"]["completionTime"] == children[1]["status"]["completionTime"]
    assert job["metadata"]["updateTimestamp"] >= max(c["metadata"]["updateTimestamp"] for c in children)
    assert children[2]["status"]["startTime"] == "" and children[2]["status"]["completionTime"] == ""


def test_any_node_can_be_queried_by_uid(server: ServerProcess) -> None:
    status, node = get_mesh_job(client_for(server, "root"), PAY_LEAF_FAILED)
    assert status == 200
    assert node["metadata"]["uid"] == PAY_LEAF_FAILED
    assert node["spec"] == {"type": "WaitControlPlaneReady", "target": "cluster c1", "subjobs": []}
    assert node["status"]["phase"] == "Failed"
    assert node["status"]["reason"] == "istiod not ready after 300s"


def test_running_parent_is_running(server: ServerProcess) -> None:
    _, job = get_mesh_job(client_for(server, "root"), SHOP_JOB)
    assert job["status"]["phase"] == "Running"
    assert job["status"]["completionTime"] == ""


def test_tag_conditioned_user_reads_exactly_the_tagged_meshes_jobs(server: ServerProcess) -> None:
    alice = client_for(server, "alice")
    status, job = get_mesh_job(alice, PAY_JOB)
    assert status == 200 and job["metadata"]["uid"] == PAY_JOB
    denied = refused(alice, SHOP_JOB)
    assert (denied.status_code, denied.error_code) == (403, "ASM.01000002")
    assert "asm:mesh:getUpgradeJob" in denied.error_msg and "implicit deny" in denied.error_msg
    assert "9b2f4c1e-0000-4000-8000-000000000002" in denied.error_msg  # names the resource
    missing = refused(alice, MISSING_JOB)
    assert (missing.status_code, missing.error_code) == (404, "ASM.01010002")


def test_unknown_job_is_404_with_request_id(server: ServerProcess) -> None:
    error = refused(client_for(server, "root"), MISSING_JOB)
    assert error.status_code == 404
    assert error.error_code == "ASM.01010002"
    assert MISSING_JOB in error.error_msg
    assert re.fullmatch(r"[0-9a-f]{32}", error.request_id)


def test_job_of_a_mesh_in_another_project_is_404(server: ServerProcess) -> None:
    root = client_for(server, "root")
    assert refused(root, EU_JOB).status_code == 404
    assert refused(root, OTHER_JOB).status_code == 404
    status, _ = get_mesh_job(client_for(server, "root", EU_PROJECT), EU_JOB)
    assert status == 200


def test_project_of_another_account_is_refused(server: ServerProcess) -> None:
    error = refused(client_for(server, "root", OTHER_PROJECT), OTHER_JOB)
    assert (error.status_code, error.error_code) == (401, "ASM.01000001")


def test_group_policy_by_enterprise_project(server: ServerProcess) -> None:
    bob = client_for(server, "bob")
    assert get_mesh_job(bob, SHOP_JOB)[0] == 200
    assert refused(bob, PAY_JOB).status_code == 403


def test_explicit_deny_beats_allow(server: ServerProcess) -> None:
    carol = client_for(server, "carol")
    assert get_mesh_job(carol, SHOP_JOB)[0] == 200
    error = refused(carol, PAY_JOB)
    assert error.status_code == 403 and "explicit deny" in error.error_msg


def test_role_policy_scoped_to_an_enterprise_project(server: ServerProcess) -> None:
    dave = client_for(server, "dave")
    assert get_mesh_job(dave, PAY_JOB)[0] == 200
    assert refused(dave, SHOP_JOB).status_code == 403


def test_user_without_policies_never_learns_whether_a_job_exists(server: ServerProcess) -> None:
    erin = client_for(server, "erin")
    for job_id in (PAY_JOB, MISSING_JOB, "not-even-a-uuid"):
        assert refused(erin, job_id).status_code == 403


def test_temporary_keys(server: ServerProcess) -> None:
    ak, sk = "AKALICETEMPVALID0001", "AliceTempSecretValid00000000000000000001"
    valid = asm_client(server.url, ak, sk, PROJECT, security_token="temp-token-valid")
    assert get_mesh_job(valid, PAY_JOB)[0] == 200
    wrong_token = asm_client(server.url, ak, sk, PROJECT, security_token="temp-token-wrong")
    assert refused(wrong_token, PAY_JOB).error_code == "APIGW.0301"
    expired = asm_client(
        server.url,
        "AKALICETEMPEXPIRED01",
        "AliceTempSecretExpired000000000000000001",
        PROJECT,
        security_token="temp-token-expired",
    )
    error = refused(expired, PAY_JOB)
    assert (error.status_code, error.error_code) == (401, "APIGW.0301")
    assert "expired" in error.error_msg


def test_disabled_key_and_wrong_secret_are_401(server: ServerProcess) -> None:
    assert refused(client_for(server, "frank"), PAY_JOB).status_code == 401
    ak, _ = KEYS["alice"]
    wrong = asm_client(server.url, ak, "NotTheSecretKey000000000000000000000000", PROJECT)
    error = refused(wrong, PAY_JOB)
    assert (error.status_code, error.error_code) == (401, "APIGW.0301")
    assert "NotTheSecretKey" not in error.error_msg


def test_sm3_and_v11_signatures(server: ServerProcess) -> None:
    from huaweicloudsdkasm.v1 import AsmClient
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkcore.region.region import Region
    from huaweicloudsdkcore.signer.algorithm import SigningAlgorithm

    ak, sk = KEYS["alice"]
    config = HttpConfig.get_default_config()
    config.signing_algorithm = SigningAlgorithm.HMAC_SM3
    sm3 = (
        AsmClient.new_builder()
        .with_credentials(BasicCredentials(ak, sk, PROJECT))
        .with_http_config(config)
        .with_endpoints([server.url])
        .build()
    )
    assert get_mesh_job(sm3, PAY_JOB)[0] == 200

    credentials = BasicCredentials(ak, sk, PROJECT).with_derived_predicate(lambda _request: True)
    builder = (
        AsmClient.new_builder().with_credentials(credentials).with_region(Region("cn-north-4", server.url))
    )
    v11 = builder._with_derived_auth_service_name("asm").build()
    assert get_mesh_job(v11, PAY_JOB)[0] == 200
