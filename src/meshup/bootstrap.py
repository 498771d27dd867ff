"""First start: an empty database gets a demo account so a new user can call the API at once."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshup.clock import Clock
from meshup.iam.identity import new_access_key, new_hex_id, new_password, new_secret_key
from meshup.iam.secrets import MasterKey
from meshup.store import identity as identity_store
from meshup.store.db import Database

DEMO_ACCOUNT = "demo"
DEMO_PROJECT = "cn-north-4"
DEMO_USER = "demo-admin"
DEMO_MESH = "demo-mesh"

# Two simulated clusters with injected namespaces, so a first canary upgrade has something to do.
DEMO_CLUSTERS: list[dict[str, Any]] = [
    {
        "id": "demo-cluster-1",
        "kubernetesVersion": "1.28",
        "nodes": {"count": 6, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "default",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "frontend", "replicas": 2}, {"name": "gateway-api", "replicas": 2}],
            },
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [
                    {"name": "cart", "replicas": 3},
                    {"name": "catalog", "replicas": 2},
                    {"name": "checkout", "replicas": 2},
                ],
            },
            {"name": "tools", "labels": {}, "workloads": [{"name": "debug", "replicas": 1}]},
        ],
    },
    {
        "id": "demo-cluster-2",
        "kubernetesVersion": "1.27",
        "nodes": {"count": 4, "cpu": "8", "memory": "32Gi", "masterLabelled": 3},
        "namespaces": [
            {
                "name": "shop",
                "labels": {"istio-injection": "enabled"},
                "workloads": [{"name": "cart", "replicas": 2}, {"name": "catalog", "replicas": 1}],
            }
        ],
    },
]


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    account: str
    project_name: str
    project_id: str
    user: str
    password: str
    access_key: str
    secret_key: str
    mesh_id: str

    def as_json(self, endpoint: str) -> dict[str, str]:
        return {
            "endpoint": endpoint,
            "domainName": self.account,
            "projectName": self.project_name,
            "projectId": self.project_id,
            "userName": self.user,
            "password": self.password,
            "accessKey": self.access_key,
            "secretKey": self.secret_key,
            "meshId": self.mesh_id,
        }


def create_demo_if_empty(db: Database, master_key: MasterKey, clock: Clock) -> DemoCredentials | None:
    """Create the demo account when no account exists yet; None when there is already one."""
    with db.read() as conn:
        if identity_store.count_accounts(conn) > 0:
            return None  # every start but the first: nothing to parse
    # Imported here, where they are used once in a database's life: not part of every start.
    from meshup.seed.apply import apply_seed
    from meshup.seed.schema import parse_seed

    project_id = new_hex_id()
    credentials = DemoCredentials(
        account=DEMO_ACCOUNT,
        project_name=DEMO_PROJECT,
        project_id=project_id,
        user=DEMO_USER,
        password=new_password(),
        access_key=new_access_key(),
        secret_key=new_secret_key(),
        mesh_id=str(uuid.uuid4()),
    )
    seed = parse_seed(
        {
            "accounts": [
                {
                    "name": DEMO_ACCOUNT,
                    "projects": [{"name": DEMO_PROJECT, "id": project_id}],
                    "users": [
                        {
                            "name": DEMO_USER,
                            "root": True,
                            "password": credentials.password,
                            "accessKeys": [{"ak": credentials.access_key, "sk": credentials.secret_key}],
                        }
                    ],
                    "clusters": DEMO_CLUSTERS,
                    "meshes": [
                        {
                            "name": DEMO_MESH,
                            "id": credentials.mesh_id,
                            "project": DEMO_PROJECT,
                            "version": "1.15.7-r1",
                            "tags": {"team": "demo"},
                            "clusters": [cluster["id"] for cluster in DEMO_CLUSTERS],
                        }
                    ],
                }
            ]
        }
    )
    with db.write() as conn:
        if identity_store.count_accounts(conn) > 0:
            return None
        apply_seed(conn, seed, master_key, clock.now())
    return credentials


def write_credentials_file(
    path: Path, credentials: DemoCredentials, endpoint: str, *, control_token: str | None = None
) -> None:
    """Mode 0600 from the first byte: the file holds a password, a secret key, the control token."""
    document = credentials.as_json(endpoint)
    if control_token is not None:
        document["controlToken"] = control_token
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)
