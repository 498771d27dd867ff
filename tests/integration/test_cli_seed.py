"""``meshup seed apply``: all or nothing, and idempotent, on every database backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from typer.testing import CliRunner

from meshup.cli import cli
from meshup.store import tables as t
from meshup.store.db import Database
from tests.support.databases import database_url

COUNTED: dict[str, Table] = {
    "accounts": t.accounts,
    "projects": t.projects,
    "enterprise_projects": t.enterprise_projects,
    "users": t.users,
    "groups": t.groups,
    "group_members": t.group_members,
    "access_keys": t.access_keys,
    "policies": t.policies,
    "clusters": t.clusters,
    "meshes": t.meshes,
    "jobs": t.jobs,
}


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database_url(backend, tmp_path) as url:
        yield url


def seed_apply(url: str, workdir: Path, file: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["MESHUP_DATABASE_URL"] = url
    env.pop("MESHUP_MASTER_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "meshup.cli", "seed", "apply", str(file)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        db.migrate()  # a database nothing was ever applied to is still countable
        with db.read() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in COUNTED.items()
            }
    finally:
        db.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """The identity rows that must not change when the same file is applied again."""
    db = Database(url)
    try:
        with db.read() as conn:
            return {
                "accounts": sorted(conn.execute(select(t.accounts.c.id, t.accounts.c.name)).all()),
                "projects": sorted(conn.execute(select(t.projects.c.id, t.projects.c.name)).all()),
                "users": sorted(
                    conn.execute(
                        select(
                            t.users.c.id, t.users.c.name, t.users.c.password_hash, t.users.c.password_version
                        )
                    ).all()
                ),
                "keys": sorted(
                    conn.execute(
                        select(t.access_keys.c.ak, t.access_keys.c.sk_encrypted, t.access_keys.c.enabled)
                    ).all()
                ),
                "meshes": sorted(conn.execute(select(t.meshes.c.id, t.meshes.c.name)).all()),
            }
    finally:
        db.dispose()


def small_seed(**user_overrides: Any) -> dict[str, Any]:
    user: dict[str, Any] = {
        "name": "ops-admin",
        "root": True,
        "password": "Ops-Passw0rd!",
        "accessKeys": [{"ak": "AKOPSEXAMPLE00000001", "sk": "OpsSecretKeyExample000000000000000000001"}],
    }
    user.update(user_overrides)
    return {
        "accounts": [
            {
                "name": "ops",
                "projects": [{"name": "cn-north-4", "id": "abcdefabcdefabcdefabcdefabcdefab"}],
                "users": [user],
            }
        ]
    }


def rich_seed() -> dict[str, Any]:
    """Every kind of object a seed declares; one password only (hashing is deliberately slow)."""
    read_jobs = {"Version": "5.0", "Statement": [{"Effect": "Allow", "Action": ["asm:mesh:getUpgradeJob"]}]}
    return {
        "accounts": [
            {
                "name": "acme",
                "id": "5f0d9c3a6b1e4c2d8e7f60718293a4b5",
                "projects": [
                    {"name": "cn-north-4", "id": "0123456789abcdef0123456789abcdef"},
                    {"name": "eu-west-0"},
                ],
                "enterpriseProjects": [{"id": "7c1e0b2a-0000-4000-8000-000000000001", "name": "payments"}],
                "groups": [{"name": "readers", "identityPolicies": [read_jobs]}],
                "users": [
                    {
                        "name": "acme-admin",
                        "root": True,
                        "password": "Root-Passw0rd!",
                        "accessKeys": [
                            {"ak": "AKROOTEXAMPLE0000001", "sk": "RootSecretKeyExample00000000000000000001"}
                        ],
                    },
                    {
                        "name": "alice",
                        "groups": ["readers"],
                        "accessKeys": [
                            {"ak": "AKALICEEXAMPLE000001", "sk": "AliceSecretKeyExample0000000000000000001"},
                            {
                                "ak": "AKALICETEMP000000001",
                                "sk": "AliceTempSecretKeyExample000000000000001",
                                "securityToken": "temporary-token",
                                "expiresAt": "2099-01-01T00:00:00Z",
                            },
                        ],
                        "rolePolicies": [
                            {
                                "scope": {"enterpriseProject": "7c1e0b2a-0000-4000-8000-000000000001"},
                                "policy": {
                                    "Version": "1.1",
                                    "Statement": [{"Effect": "Allow", "Action": ["asm:mesh:*"]}],
                                },
                            }
                        ],
                    },
                ],
                "clusters": [{"id": "c1", "kubernetesVersion": "1.28"}],
                "meshes": [
                    {
                        "name": "mesh-pay",
                        "id": "9b2f4c1e-0000-4000-8000-000000000001",
                        "project": "cn-north-4",
                        "version": "1.15.7-r1",
                        "enterpriseProjectId": "7c1e0b2a-0000-4000-8000-000000000001",
                        "tags": {"team": "payments"},
                        "clusters": ["c1", "c2"],
                        "jobs": [
                            {
                                "uid": "2d1c7a00-0000-4000-8000-000000000001",
                                "type": "ControlPlaneUpgrade",
                                "subjobs": [
                                    {"type": "InstallControlPlane", "phase": "Success"},
                                    {
                                        "type": "WaitControlPlaneReady",
                                        "phase": "Failed",
                                        "reason": "not ready",
                                    },
                                ],
                            }
                        ],
                    }
                ],
            },
            {
                "name": "other",
                "projects": [{"name": "cn-north-4"}],
                "users": [
                    {
                        "name": "other-admin",
                        "root": True,
                        "accessKeys": [
                            {"ak": "AKOTHERROOT000000001", "sk": "OtherSecretKeyExample0000000000000000001"}
                        ],
                    }
                ],
            },
        ]
    }


def test_valid_file_applies_and_is_idempotent(db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "rich.json", rich_seed())
    first = seed_apply(db_url, tmp_path, path)
    assert first.returncode == 0, first.stderr
    assert "acme" in first.stdout and "other" in first.stdout
    after_first = counts(db_url)
    assert after_first["accounts"] == 2
    assert after_first["projects"] == 3
    assert after_first["users"] == 3
    assert after_first["access_keys"] == 4
    assert after_first["group_members"] == 1
    assert after_first["policies"] == 2
    assert after_first["clusters"] == 2  # c2 is created with defaults for the mesh
    assert after_first["meshes"] == 1
    assert after_first["jobs"] == 3
    rows = snapshot(db_url)

    second = seed_apply(db_url, tmp_path, path)
    assert second.returncode == 0, second.stderr
    assert counts(db_url) == after_first
    assert snapshot(db_url) == rows

    # Applying another file adds to what is there, and deletes nothing.
    third = seed_apply(db_url, tmp_path, write(tmp_path / "small.json", small_seed()))
    assert third.returncode == 0, third.stderr
    grown = counts(db_url)
    assert grown["accounts"] == 3 and grown["users"] == 4 and grown["access_keys"] == 5
    assert grown["jobs"] == after_first["jobs"]


def test_invalid_file_is_refused_with_its_path_and_applies_nothing(db_url: str, tmp_path: Path) -> None:
    assert seed_apply(db_url, tmp_path, write(tmp_path / "base.json", small_seed())).returncode == 0
    before = counts(db_url)
    rows = snapshot(db_url)

    document = small_seed(password="Changed-Passw0rd!")  # valid change that must not happen
    document["accounts"].append(
        {
            "name": "newcomer",
            "users": [
                {"name": "fine", "password": "Fine-Passw0rd!"},
                {"name": "broken", "accessKeys": [{"ak": "AKBROKEN000000000001", "sk": "short"}]},
            ],
        }
    )
    result = seed_apply(db_url, tmp_path, write(tmp_path / "bad.json", document))
    assert result.returncode != 0
    assert "accounts[1].users[1].accessKeys[0].sk" in result.stderr
    assert "short" not in result.stderr  # a secret is never echoed, even a bad one
    assert counts(db_url) == before
    assert snapshot(db_url) == rows


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("accounts: [{name: x, users: [{name: u, root: maybe}]}]\n", "accounts[0].users[0].root"),
        ("accounts:\n  - name: [unclosed\n", "bad.yaml"),
        ("nothing: here\n", "accounts"),
    ],
    ids=["wrong-type", "not-yaml", "no-accounts"],
)
def test_malformed_files_are_refused(tmp_path: Path, content: str, where: str) -> None:
    # Refused before the database is touched: one backend, and the CLI in-process, are enough.
    url = f"sqlite:///{tmp_path / 'meshup.db'}"
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["seed", "apply", str(path), "--database-url", url])
    assert result.exit_code != 0
    assert where in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert counts(url)["accounts"] == 0


def test_a_conflict_found_while_applying_rolls_everything_back(db_url: str, tmp_path: Path) -> None:
    assert seed_apply(db_url, tmp_path, write(tmp_path / "base.json", small_seed())).returncode == 0
    before = counts(db_url)
    rows = snapshot(db_url)
    # Schema-valid, but the access key already belongs to ops-admin: found only against the database.
    thief = {
        "accounts": [
            {
                "name": "thief",
                "projects": [{"name": "cn-north-4"}],
                "users": [
                    {
                        "name": "thief-admin",
                        "root": True,
                        "password": "Thief-Passw0rd!",
                        "accessKeys": [
                            {"ak": "AKOPSEXAMPLE00000001", "sk": "ThiefSecretKeyExample000000000000000001"}
                        ],
                    }
                ],
            }
        ]
    }
    result = seed_apply(db_url, tmp_path, write(tmp_path / "thief.json", thief))
    assert result.returncode != 0
    assert "AKOPSEXAMPLE00000001" in result.stderr
    assert "ThiefSecretKeyExample" not in result.stderr
    assert "Traceback" not in result.stderr
    assert counts(db_url) == before
    assert snapshot(db_url) == rows


def test_missing_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meshup.db'}"
    result = CliRunner().invoke(
        cli, ["seed", "apply", str(tmp_path / "does-not-exist.yaml"), "--database-url", url]
    )
    assert result.exit_code != 0
    assert "does-not-exist.yaml" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
