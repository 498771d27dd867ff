"""Tokens through keystoneauth1, the SDK's project lookup, and identity changes made while serving."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from huaweicloudsdkasm.v1 import AsmClient
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import identity as ks_identity
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from meshup.iam.signing import sign
from tests.e2e.conftest import EU_PROJECT, KEYS, MISSING_JOB, PASSWORDS, PAY_JOB, PROJECT, SHOP_JOB
from tests.support.clients import get_mesh_job, keystone_token
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e

ALICE = PASSWORDS["alice"]


def job_url(server: ServerProcess, job_id: str, project: str = PROJECT) -> str:
    return f"{server.url}/v1/{project}/mesh-job/{job_id}"


def v3_session(server: ServerProcess, user: str = "alice", password: str = ALICE, **scope: Any) -> Any:
    auth = v3.Password(
        auth_url=f"{server.url}/v3", username=user, password=password, user_domain_name="acme", **scope
    )
    return auth, ks_session.Session(auth=auth)


def with_token(server: ServerProcess, token: str, job_id: str, project: str = PROJECT) -> httpx.Response:
    return httpx.get(job_url(server, job_id, project), headers={"X-Auth-Token": token})


def login(server: ServerProcess, user: str, password: str, domain: str, project_id: str) -> httpx.Response:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}},
            },
            "scope": {"project": {"id": project_id}},
        }
    }
    return httpx.post(f"{server.url}/v3/auth/tokens", json=body)


def signed_get(server: ServerProcess, path_and_query: str, ak: str, sk: str) -> httpx.Response:
    """A GET signed like the official SDK signs it (SDK-HMAC-SHA256 over Host and X-Sdk-Date)."""
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": f"127.0.0.1:{server.port}", "X-Sdk-Date": date, "Content-Type": "application/json"}
    headers["Authorization"] = sign("GET", path_and_query, headers, b"", ak, sk, sdk_date=date)
    return httpx.get(f"{server.url}{path_and_query}", headers=headers)


def gateway_failure(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error_code"] == "APIGW.0301", body
    assert body["request_id"] == response.headers["x-request-id"]
    return str(body["error_msg"])


def project_not_allowed(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["errorCode"] == "ASM.01000001"


# -- tokens with keystoneauth1 -------------------------------------------------------------------


def test_v3_password_token_reads_jobs_through_the_session(server: ServerProcess) -> None:
    _, sess = v3_session(server, project_id=PROJECT)
    ok = sess.get(job_url(server, PAY_JOB), authenticated=True)
    assert ok.status_code == 200
    assert ok.json()["metadata"]["uid"] == PAY_JOB
    assert ok.json()["kind"] == "Job"
    denied = sess.get(job_url(server, SHOP_JOB), authenticated=True, raise_exc=False)
    assert denied.status_code == 403
    assert denied.json()["errorCode"] == "ASM.01000002"
    missing = sess.get(job_url(server, MISSING_JOB), authenticated=True, raise_exc=False)
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "ASM.01010002"
    # The same token, sent by hand.
    token = sess.get_token()
    assert with_token(server, token, PAY_JOB).status_code == 200


def test_token_document_serves_keystoneauth_accessors(server: ServerProcess) -> None:
    auth, sess = v3_session(server, project_id=PROJECT)
    assert sess.get_project_id() == PROJECT
    user_id = sess.get_user_id()
    assert isinstance(user_id, str) and len(user_id) == 32
    access = auth.get_access(sess)
    assert access.username == "alice"
    assert access.user_domain_name == "acme"
    assert access.project_name == "cn-north-4"
    assert access.role_names and all(isinstance(name, str) for name in access.role_names)
    assert sess.get_endpoint(service_type="asm", interface="public") == server.url
    assert sess.get_endpoint(service_type="asm", interface="public", region_name="cn-north-4") == server.url
    # The root user's role differs from an IAM user's.
    root_auth, root_sess = v3_session(server, "acme-admin", PASSWORDS["acme-admin"], project_id=PROJECT)
    assert set(root_auth.get_access(root_sess).role_names) != set(access.role_names)


def test_login_by_project_name_and_domain(server: ServerProcess) -> None:
    _, sess = v3_session(server, project_name="cn-north-4", project_domain_name="acme")
    assert sess.get_project_id() == PROJECT
    assert with_token(server, sess.get_token(), PAY_JOB).status_code == 200
    _, eu = v3_session(server, project_name="eu-west-0", project_domain_name="acme")
    assert eu.get_project_id() == EU_PROJECT


def test_token_scoped_to_another_project_is_not_valid_here(server: ServerProcess) -> None:
    _, sess = v3_session(server, project_id=EU_PROJECT)
    project_not_allowed(with_token(server, sess.get_token(), PAY_JOB))
    project_not_allowed(sess.get(job_url(server, PAY_JOB), authenticated=True, raise_exc=False))


@pytest.mark.parametrize("scope", [{}, {"domain_name": "acme"}], ids=["unscoped", "domain-scoped"])
def test_unscoped_and_domain_scoped_tokens_are_refused_on_v1(
    server: ServerProcess, scope: dict[str, str]
) -> None:
    auth, sess = v3_session(server, **scope)
    token = sess.get_token()
    assert auth.get_access(sess).project_id is None
    project_not_allowed(with_token(server, token, PAY_JOB))
    project_not_allowed(with_token(server, token, MISSING_JOB))


def test_wrong_password_raises_unauthorized(server: ServerProcess) -> None:
    _, sess = v3_session(server, password="not-" + ALICE, project_id=PROJECT)
    with pytest.raises(ks_exceptions.Unauthorized):
        sess.get_token()
    _, nobody = v3_session(server, user="nobody-at-all", password=ALICE, project_id=PROJECT)
    with pytest.raises(ks_exceptions.Unauthorized):
        nobody.get_token()


def test_token_validation_endpoint(server: ServerProcess) -> None:
    token, _ = keystone_token(server.url, "alice", ALICE, "acme", PROJECT)
    issued = login(server, "alice", ALICE, "acme", PROJECT)
    assert issued.status_code == 201
    subject = issued.headers["x-subject-token"]
    checked = httpx.get(
        f"{server.url}/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": subject}
    )
    assert checked.status_code == 200
    assert checked.headers["x-subject-token"] == subject
    assert checked.json() == issued.json()
    invalid = httpx.get(
        f"{server.url}/v3/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": subject[:-4] + "AAAA"},
    )
    assert invalid.status_code == 404
    error = invalid.json()["error"]
    assert error["code"] == 404
    assert error["title"] and error["message"]
    garbage = httpx.get(
        f"{server.url}/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": "garbage"}
    )
    assert garbage.status_code == 404
    no_caller = httpx.get(f"{server.url}/v3/auth/tokens", headers={"X-Subject-Token": subject})
    assert no_caller.status_code == 401
    assert no_caller.json()["error"]["code"] == 401


@pytest.mark.parametrize("suffix", ["", "/", "/v3"])
def test_generic_password_plugin_discovers_v3(server: ServerProcess, suffix: str) -> None:
    auth = ks_identity.Password(
        auth_url=server.url + suffix,
        username="alice",
        password=ALICE,
        user_domain_name="acme",
        project_id=PROJECT,
    )
    sess = ks_session.Session(auth=auth)
    assert sess.get_project_id() == PROJECT
    assert sess.get(job_url(server, PAY_JOB), authenticated=True).status_code == 200


def test_version_documents(server: ServerProcess) -> None:
    root = httpx.get(server.url)
    assert root.status_code == 200
    values = root.json()["versions"]["values"]
    assert [v["id"] for v in values] == ["v3.0"]
    assert values[0]["links"][0]["href"] == f"{server.url}/v3/"
    v3_doc = httpx.get(f"{server.url}/v3")
    assert v3_doc.status_code == 200
    assert v3_doc.json()["version"]["id"] == "v3.0"


# -- the official SDK's identity calls -----------------------------------------------------------


def test_project_lookup_signed_with_aksk(server: ServerProcess) -> None:
    ak, sk = KEYS["alice"]
    response = signed_get(server, "/v3/projects?name=cn-north-4", ak, sk)
    assert response.status_code == 200, response.text
    projects = response.json()["projects"]
    assert len(projects) == 1
    assert projects[0]["id"] == PROJECT
    assert projects[0]["name"] == "cn-north-4"
    assert projects[0]["enabled"] is True
    everything = signed_get(server, "/v3/projects", ak, sk)
    assert {p["id"] for p in everything.json()["projects"]} == {PROJECT, EU_PROJECT}
    tampered = signed_get(server, "/v3/projects?name=cn-north-4", ak, "x" + sk[1:])
    assert tampered.status_code == 401
    assert tampered.json()["error"]["code"] == 401


def test_sdk_finds_the_project_id_itself(server: ServerProcess) -> None:
    ak, sk = KEYS["alice"]
    credentials = BasicCredentials(ak, sk).with_iam_endpoint(server.url)
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    client = (
        AsmClient.new_builder()
        .with_credentials(credentials)
        .with_http_config(config)
        .with_region(Region("cn-north-4", server.url))
        .build()
    )
    status, job = get_mesh_job(client, PAY_JOB)
    assert status == 200
    assert job["metadata"]["uid"] == PAY_JOB
    assert credentials.project_id == PROJECT


# -- identity changes while the server runs (a new account: seed.yaml's stay untouched) -----------


@dataclass
class Extra:
    account: str
    project: str
    users: dict[str, str]  # name -> password
    keys: dict[str, tuple[str, str]]  # "main"/"spare" -> (ak, sk), both of user ks-keys


def seed_apply(server: ServerProcess, document: dict[str, Any]) -> None:
    """``meshup seed apply`` against the running server's database, as an operator would run it."""
    path = server.workdir / f"extra-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(document))
    env = dict(server.env)
    env["MESHUP_DATABASE_URL"] = server.database_url
    result = subprocess.run(
        [sys.executable, "-m", "meshup.cli", "seed", "apply", str(path)],
        cwd=server.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


# Lets a (non-root) test user get past authorization, so that a 404 proves it was authenticated.
READ_JOBS = {"Version": "5.0", "Statement": [{"Effect": "Allow", "Action": ["asm:mesh:getUpgradeJob"]}]}


def _random_ak() -> str:
    return "AKKS" + secrets.token_hex(8).upper()


@pytest.fixture(scope="module")
def extra(server: ServerProcess) -> Iterator[Extra]:
    suffix = secrets.token_hex(4)
    project = secrets.token_hex(16)
    users = {
        "ks-root": "Ks-Root-Passw0rd!",
        "ks-changer": "Ks-Changer-Passw0rd!",
        "ks-locked": "Ks-Locked-Passw0rd!",
    }
    keys = {
        "main": (_random_ak(), secrets.token_hex(20)),
        "spare": (_random_ak(), secrets.token_hex(20)),
    }
    document = {
        "accounts": [
            {
                "name": f"ks-{suffix}",
                "projects": [{"name": "cn-north-4", "id": project}],
                "users": [
                    {"name": "ks-root", "root": True, "password": users["ks-root"]},
                    {  # keys only: no password to hash when the file is applied again
                        "name": "ks-keys",
                        "identityPolicies": [READ_JOBS],
                        "accessKeys": [
                            {"ak": keys["main"][0], "sk": keys["main"][1]},
                            {"ak": keys["spare"][0], "sk": keys["spare"][1]},
                        ],
                    },
                    {"name": "ks-changer", "password": users["ks-changer"], "identityPolicies": [READ_JOBS]},
                    {"name": "ks-locked", "password": users["ks-locked"], "identityPolicies": [READ_JOBS]},
                ],
            }
        ]
    }
    seed_apply(server, document)
    yield Extra(f"ks-{suffix}", project, users, keys)


def test_password_change_revokes_earlier_tokens(server: ServerProcess, extra: Extra) -> None:
    old_password = extra.users["ks-changer"]
    issued = login(server, "ks-changer", old_password, extra.account, extra.project)
    assert issued.status_code == 201
    token = issued.headers["x-subject-token"]
    # Authenticated and allowed to read jobs: this one simply does not exist.
    assert with_token(server, token, MISSING_JOB, extra.project).status_code == 404

    new_password = "Ks-Changed-Passw0rd!"
    seed_apply(
        server,
        {
            "accounts": [
                {
                    "name": extra.account,
                    "projects": [{"name": "cn-north-4", "id": extra.project}],
                    "users": [
                        {"name": "ks-changer", "password": new_password, "identityPolicies": [READ_JOBS]}
                    ],
                }
            ]
        },
    )
    why = gateway_failure(with_token(server, token, MISSING_JOB, extra.project))
    assert "revoked" in why
    assert login(server, "ks-changer", old_password, extra.account, extra.project).status_code == 401
    fresh = login(server, "ks-changer", new_password, extra.account, extra.project)
    assert fresh.status_code == 201
    assert with_token(server, fresh.headers["x-subject-token"], MISSING_JOB, extra.project).status_code == 404
    # Another user's tokens of the same account are not affected.
    other = login(server, "ks-root", extra.users["ks-root"], extra.account, extra.project)
    assert with_token(server, other.headers["x-subject-token"], MISSING_JOB, extra.project).status_code == 404


def test_disabled_key_is_refused_on_the_very_next_request(server: ServerProcess, extra: Extra) -> None:
    ak, sk = extra.keys["spare"]
    path = f"/v1/{extra.project}/mesh-job/{MISSING_JOB}"
    assert signed_get(server, path, ak, sk).status_code == 404  # authenticated, and now cached
    assert signed_get(server, path, ak, sk).status_code == 404
    seed_apply(
        server,
        {
            "accounts": [
                {
                    "name": extra.account,
                    "projects": [{"name": "cn-north-4", "id": extra.project}],
                    "users": [
                        {
                            "name": "ks-keys",
                            "identityPolicies": [READ_JOBS],
                            "accessKeys": [
                                {"ak": extra.keys["main"][0], "sk": extra.keys["main"][1]},
                                {"ak": ak, "sk": sk, "enabled": False},
                            ],
                        }
                    ],
                }
            ]
        },
    )
    why = gateway_failure(signed_get(server, path, ak, sk))
    assert "disabled" in why
    assert sk not in why
    # The user's other key still works.
    main_ak, main_sk = extra.keys["main"]
    assert signed_get(server, path, main_ak, main_sk).status_code == 404


def test_login_protection_locks_after_five_failures(server: ServerProcess, extra: Extra) -> None:
    right = extra.users["ks-locked"]
    unknown_user = login(server, "ks-nobody", "Wrong-Passw0rd!", extra.account, extra.project)
    unknown_domain = login(server, "ks-locked", "Wrong-Passw0rd!", "no-such-domain", extra.project)
    for _ in range(5):
        wrong = login(server, "ks-locked", "Wrong-Passw0rd!", extra.account, extra.project)
        assert wrong.status_code == 401
    locked = login(server, "ks-locked", right, extra.account, extra.project)
    assert locked.status_code == 401
    # The refusal looks exactly like any other failed login: nothing tells the user exists.
    for response in (unknown_user, unknown_domain, wrong):
        assert response.status_code == 401
        assert response.json() == locked.json()
    assert "lock" not in locked.text.lower()
    with pytest.raises(ks_exceptions.Unauthorized):
        ks_session.Session(
            auth=v3.Password(
                auth_url=f"{server.url}/v3",
                username="ks-locked",
                password=right,
                user_domain_name=extra.account,
                project_id=extra.project,
            )
        ).get_token()
    # Only that user is locked.
    assert login(server, "ks-root", extra.users["ks-root"], extra.account, extra.project).status_code == 201
