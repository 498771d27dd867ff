"""How long a canary upgrade of the demo mesh takes at a given simulated speed, step by step.

Starts ``meshup serve`` on an empty database (which creates the demo account and mesh), then drives
PreCheck → ControlPlaneUpgrade → DataPlaneUpgrade → Complete through the official SDK's call_api,
polling mesh-job, and prints each step's wall-clock time.

    python bench/upgrade_duration.py               # default speed (1)
    python bench/upgrade_duration.py --sim-speed 0
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sim-speed", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meshup-demo-"))
    os.environ["HOME"] = str(work)  # the SDK writes ~/.huaweicloud on import
    from huaweicloudsdkasm.v1 import AsmClient
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_response import SdkResponse

    class RawJson(SdkResponse):  # type: ignore[misc]
        openapi_types: dict[str, str] = {}
        attribute_map: dict[str, str] = {}

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshup.cli",
            "serve",
            "--port",
            str(port),
            "--no-access-log",
            "--sim-speed",
            str(args.sim_speed),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        demo = json.loads((work / "meshup-credentials.json").read_text())
        client = (
            AsmClient.new_builder()
            .with_credentials(BasicCredentials(demo["accessKey"], demo["secretKey"], demo["projectId"]))
            .with_endpoints([url])
            .build()
        )

        def call(method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> dict[str, Any]:
            response = client.call_api(
                resource_path=path,
                method=method,
                path_params=params,
                header_params={"Content-Type": "application/json"},
                body=body,
                response_type=RawJson,
            )
            return dict(response.to_json_object())

        def wait(job_id: str) -> str:
            while True:
                job = call("GET", "/v1/{project_id}/mesh-job/{job_id}", job_id=job_id)
                if job["status"]["phase"] in ("Success", "Failed"):
                    return str(job["status"]["phase"])
                time.sleep(0.2)

        started = time.monotonic()
        task = call(
            "POST",
            "/v1/{project_id}/mesh-upgrade",
            {
                "kind": "MeshUpgrade",
                "apiVersion": "v1",
                "metadata": {"name": "to-1-18"},
                "spec": {
                    "meshId": demo["meshId"],
                    "upgradeStrategy": "Canary",
                    "targetVersion": "1.18.7-r5",
                    "targetType": "InCluster",
                    "currentStep": {"step": "PreCheck"},
                },
            },
        )
        task_id = task["metadata"]["uid"]
        total = 0.0
        for step in ("PreCheck", "ControlPlaneUpgrade", "DataPlaneUpgrade", "Complete"):
            begin = time.monotonic()
            if step != "PreCheck":
                task = call(
                    "PUT",
                    "/v1/{project_id}/mesh-upgrade/{mesh_upgrade_id}",
                    {"spec": {"currentStep": {"step": step}}},
                    mesh_upgrade_id=task_id,
                )
            phase = wait(task["status"]["jobId"])
            elapsed = time.monotonic() - begin
            total += elapsed
            print(f"{step:22} {phase:8} {elapsed:6.1f} s")
        print(
            f"{'whole upgrade':22} {'':8} {time.monotonic() - started:6.1f} s  (sim speed {args.sim_speed:g})"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
