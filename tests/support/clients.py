"""The official clients, pointed at a meshup server as a user would point them."""

from __future__ import annotations

from typing import Any

from huaweicloudsdkasm.v1 import AsmClient
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.sdk_response import SdkResponse
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3


class RawJson(SdkResponse):  # type: ignore[misc]
    """A response model that keeps the whole JSON body (the SDK has no MeshJob model)."""

    openapi_types: dict[str, str] = {}
    attribute_map: dict[str, str] = {}


def asm_client(url: str, ak: str, sk: str, project_id: str, *, security_token: str | None = None) -> Any:
    credentials = BasicCredentials(ak, sk, project_id)
    if security_token is not None:
        credentials = credentials.with_security_token(security_token)
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (
        AsmClient.new_builder()
        .with_credentials(credentials)
        .with_http_config(config)
        .with_endpoints([url])
        .build()
    )


def call_json(
    client: Any, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """A call the SDK has no method for (mesh-job, mesh-upgrade), through its own ``call_api``."""
    response = client.call_api(
        resource_path=path,
        method=method,
        path_params=params or {},
        header_params={"Content-Type": "application/json"},
        body=body,
        response_type=RawJson,
    )
    return int(response.status_code), dict(response.to_json_object())


def get_mesh_job(client: Any, job_id: str) -> tuple[int, dict[str, Any]]:
    return call_json(client, "GET", "/v1/{project_id}/mesh-job/{job_id}", {"job_id": job_id})


def keystone_token(url: str, user: str, password: str, domain: str, project_id: str) -> tuple[str, Any]:
    auth = v3.Password(
        auth_url=f"{url}/v3",
        username=user,
        password=password,
        user_domain_name=domain,
        project_id=project_id,
    )
    sess = ks_session.Session(auth=auth)
    return str(sess.get_token()), sess
