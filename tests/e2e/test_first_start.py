"""First start on an empty database: a demo account whose credentials work at once, created once."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from sqlalchemy import func, select

from meshup.store import tables as t
from meshup.store.db import Database
from tests.support.clients import asm_client, get_mesh_job, keystone_token
from tests.support.databases import database_url
from tests.support.server import start_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An empty database and the directory its key and credentials files belong in."""
    if backend == "sqlite":
        data = tmp_path / "data"  # not the server's working directory: files go beside the db
        data.mkdir()
        with database_url(backend, data) as url:
            yield url, data
    else:
        with database_url(backend, tmp_path) as url:
            yield url, tmp_path  # no database file: the files go to the working directory


def count(url: str, table: object) -> int:
    db = Database(url)
    try:
        with db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    finally:
        db.dispose()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_a_working_demo_account_once(
    empty_database: tuple[str, Path], tmp_path: Path
) -> None:
    url, files = empty_database
    first = start_server(tmp_path, url)
    try:
        credentials_file = files / "meshup-credentials.json"
        assert credentials_file.is_file()
        assert mode(credentials_file) == 0o600
        creds = json.loads(credentials_file.read_text())
        assert creds["domainName"] == "demo"
        assert creds["projectName"] == "cn-north-4"
        assert len(creds["projectId"]) == 32 and int(creds["projectId"], 16) >= 0
        assert creds["endpoint"] == first.url
        for key in ("userName", "password", "accessKey", "secretKey"):
            assert creds[key]

        output = first.log()
        assert "first start" in output
        for value in (
            "demo",
            "cn-north-4",
            creds["projectId"],
            creds["userName"],
            creds["password"],
            creds["accessKey"],
            creds["secretKey"],
        ):
            assert value in output
        assert credentials_file.name in output

        key_file = files / "meshup.key"
        assert key_file.is_file()
        assert mode(key_file) == 0o600

        # The printed credentials work with both official clients.
        client = asm_client(first.url, creds["accessKey"], creds["secretKey"], creds["projectId"])
        with pytest.raises(ClientRequestException) as info:
            get_mesh_job(client, str(uuid.uuid4()))
        assert info.value.status_code == 404
        assert info.value.error_code == "ASM.01010002"
        token, sess = keystone_token(
            first.url, creds["userName"], creds["password"], "demo", creds["projectId"]
        )
        assert token
        assert sess.get_project_id() == creds["projectId"]
        missing = sess.get(
            f"{first.url}/v1/{creds['projectId']}/mesh-job/{uuid.uuid4()}",
            authenticated=True,
            raise_exc=False,
        )
        assert missing.status_code == 404
        assert missing.json()["errorCode"] == "ASM.01010002"
    finally:
        first.stop()

    saved = credentials_file.read_bytes()
    key_material = key_file.read_bytes()
    assert count(url, t.accounts) == 1

    second = start_server(tmp_path, url)
    try:
        output = second.log()
        assert "first start" not in output
        assert creds["password"] not in output
        assert creds["secretKey"] not in output
        # Same account, same key, same credentials file: the first start's credentials still work.
        assert credentials_file.read_bytes() == saved
        assert key_file.read_bytes() == key_material
        assert mode(key_file) == 0o600
        client = asm_client(second.url, creds["accessKey"], creds["secretKey"], creds["projectId"])
        with pytest.raises(ClientRequestException) as info:
            get_mesh_job(client, str(uuid.uuid4()))
        assert info.value.status_code == 404
    finally:
        second.stop()
    assert count(url, t.accounts) == 1
    assert count(url, t.users) == 1
    assert count(url, t.access_keys) == 1


def test_a_seeded_database_gets_no_demo_account(tmp_path: Path) -> None:
    """Only an empty database gets the demo account: a seed at start-up means no first-start output."""
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "name": "solo",
                        "projects": [{"name": "cn-north-4"}],
                        "users": [{"name": "solo-admin", "root": True, "password": "Solo-Passw0rd!"}],
                    }
                ]
            }
        )
    )
    with database_url("sqlite", tmp_path) as url:
        seeded = start_server(tmp_path, url, seed=seed)
        seeded.stop()
        assert "first start" not in seeded.log()
        assert not (tmp_path / "meshup-credentials.json").exists()
        again = start_server(tmp_path, url)  # not empty any more: still no demo account
        again.stop()
        assert "first start" not in again.log()
        assert not (tmp_path / "meshup-credentials.json").exists()
        db = Database(url)
        try:
            with db.read() as conn:
                names = set(conn.execute(select(t.accounts.c.name)).scalars())
        finally:
            db.dispose()
        assert names == {"solo"}
