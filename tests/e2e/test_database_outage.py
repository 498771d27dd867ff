"""PostgreSQL going away: 503 in the service envelope (safe to retry), never a 500, and recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from meshup.iam.signing import sign
from tests.e2e.conftest import KEYS, PAY_JOB, PROJECT, SEED
from tests.support.databases import fresh_postgres, postgres_base_url
from tests.support.server import ServerProcess, start_server

pytestmark = [pytest.mark.serial, pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    with fresh_postgres() as url:
        server = start_server(tmp_path, url, seed=SEED)
        try:
            yield server, url
        finally:
            server.stop()


def signed_get(server: ServerProcess, path: str) -> httpx.Response:
    ak, sk = KEYS["root"]
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{server.port}", "X-Sdk-Date": date}
    headers["Authorization"] = sign("GET", path, headers, b"", ak, sk, sdk_date=date)
    return httpx.get(server.url + path, headers=headers, timeout=15)


def terminate_connections(url: str) -> None:
    name = make_url(url).database
    admin = (
        make_url(postgres_base_url() or "").set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def test_lost_connections_are_503_then_recover(pg_server: tuple[ServerProcess, str]) -> None:
    server, url = pg_server
    path = f"/v1/{PROJECT}/mesh-job/{PAY_JOB}"
    assert signed_get(server, path).status_code == 200
    terminate_connections(url)
    statuses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = signed_get(server, path)
        statuses.append(response.status_code)
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.json()["errorCode"] == "ASM.01040002"
            assert response.headers["x-request-id"]
        if response.status_code == 200 and len(statuses) > 1:
            break
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    assert httpx.get(server.url + "/readyz").status_code == 200


def test_database_gone_is_503_and_not_ready(pg_server: tuple[ServerProcess, str]) -> None:
    server, url = pg_server
    path = f"/v1/{PROJECT}/mesh-job/{PAY_JOB}"
    assert signed_get(server, path).status_code == 200
    name = make_url(url).database
    admin = (
        make_url(postgres_base_url() or "").set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        terminate_connections(url)
        for _ in range(3):
            response = signed_get(server, path)
            assert response.status_code == 503, response.text
            assert response.json() == {
                "errorCode": "ASM.01040002",
                "errorMsg": "the database is unreachable right now; retry shortly",
            }
        tokens = httpx.post(
            f"{server.url}/v3/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": "alice",
                                "password": "Alice-Passw0rd!",
                                "domain": {"name": "acme"},
                            }
                        },
                    }
                }
            },
            timeout=15,
        )
        assert tokens.status_code == 503
        assert httpx.get(server.url + "/readyz", timeout=15).status_code == 503
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    deadline = time.monotonic() + 20
    while signed_get(server, path).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
