"""The ASM calls the tool makes, through the official SDK's ``AsmClient``.

The SDK has models for meshes but none for upgrade tasks and mesh jobs, so every call goes through
``call_api`` with a response model that keeps the JSON as it came.
"""

from __future__ import annotations

import copy
from typing import Any

from huaweicloudsdkasm.v1 import AsmClient
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkcore.sdk_response import SdkResponse

MESH = "/v1/{project_id}/meshes/{mesh_id}"
TASKS = "/v1/{project_id}/mesh-upgrade"
TASK = "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}"
JOB = "/v1/{project_id}/mesh-job/{job_id}"


class RawJson(SdkResponse):  # type: ignore[misc]
    openapi_types: dict[str, str] = {}
    attribute_map: dict[str, str] = {}


class AsmError(Exception):
    """A call the service refused (``status`` 4xx/5xx) or that never got an answer (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, request_id: str = "") -> None:
        where = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status} {code}: {message}{where}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


def client_for(endpoint: str, ak: str, sk: str, project_id: str) -> Any:
    """An AK/SK-signed ``AsmClient`` (always give the project id: the SDK signs it into the path)."""
    return (
        AsmClient.new_builder()
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoints([endpoint])
        .build()
    )


class AsmApi:
    def __init__(self, client: Any) -> None:
        self.client = client

    def _call(self, method: str, path: str, params: dict[str, str], body: Any = None) -> dict[str, Any]:
        try:
            response = self.client.call_api(
                resource_path=path,
                method=method,
                path_params=params,
                header_params={"Content-Type": "application/json"},
                body=body,
                response_type=RawJson,
            )
        except ServiceResponseException as error:
            raise AsmError(error.status_code, error.error_code, error.error_msg, error.request_id) from error
        except SdkException as error:
            raise AsmError(0, type(error).__name__, str(error.error_msg)) from error
        return dict(response.to_json_object())

    def mesh(self, mesh_id: str) -> dict[str, Any]:
        return self._call("GET", MESH, {"mesh_id": mesh_id})

    def create_task(self, mesh_id: str, target_version: str, name: str) -> dict[str, Any]:
        """Creates the task and starts its pre-check."""
        body = {
            "kind": "MeshUpgrade",
            "apiVersion": "v1",
            "metadata": {"name": name},
            "spec": {
                "meshId": mesh_id,
                "upgradeStrategy": "Canary",
                "targetVersion": target_version,
                "targetType": "InCluster",
                "currentStep": {"step": "PreCheck"},
            },
        }
        return self._call("POST", TASKS, {}, body)

    def task(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", TASK, {"mesh_upgrade_id": task_id})

    def start_step(
        self, task: dict[str, Any], step: str, namespaces: list[str] | None = None
    ) -> dict[str, Any]:
        """PUT the task as last read with a new ``currentStep``: that starts the step's job."""
        body = copy.deepcopy(task)
        body["spec"]["currentStep"] = {"step": step}
        if namespaces:
            body["spec"]["currentStep"]["namespaces"] = namespaces
        return self._call("PUT", TASK, {"mesh_upgrade_id": task["metadata"]["uid"]}, body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", JOB, {"job_id": job_id})
