"""Where the client's endpoint and credentials come from: flags, then environment, then the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshup.client.credentials import (
    CREDENTIALS_FILE,
    DEFAULT_ENDPOINT,
    AccessKey,
    ConnectionFlags,
    Password,
    resolve,
)
from meshup.client.errors import CredentialsError

STORED = {
    "endpoint": "http://127.0.0.1:9999",
    "domainName": "demo",
    "projectName": "cn-north-4",
    "projectId": "f" * 32,
    "userName": "demo-admin",
    "password": "Stored-Passw0rd!",
    "accessKey": "AKFILE00000000000001",
    "secretKey": "FileSecret",
    "meshId": "m",
}
SDK_ENV = {
    "HUAWEICLOUD_SDK_AK": "AKENV",
    "HUAWEICLOUD_SDK_SK": "EnvSecret",
    "HUAWEICLOUD_SDK_PROJECT_ID": "e" * 32,
}


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / CREDENTIALS_FILE
    path.write_text(json.dumps(STORED))
    return path


def test_flags_win_over_environment_and_file(stored: Path) -> None:
    flags = ConnectionFlags(endpoint="http://127.0.0.1:1/", ak="AKFLAG", sk="FlagSecret", project_id="a" * 32)
    profile = resolve(flags, SDK_ENV, stored.parent)
    assert profile.endpoint == "http://127.0.0.1:1"
    assert profile.auth == AccessKey("AKFLAG", "FlagSecret")
    assert profile.project_id == "a" * 32
    assert profile.source == "flags"


def test_environment_wins_over_file_and_keeps_its_security_token(stored: Path) -> None:
    env = {**SDK_ENV, "HUAWEICLOUD_SDK_SECURITY_TOKEN": "tok", "MESHUP_ENDPOINT": "http://h:2"}
    profile = resolve(ConnectionFlags(), env, stored.parent)
    assert profile.auth == AccessKey("AKENV", "EnvSecret", "tok")
    assert (profile.endpoint, profile.project_id, profile.source) == ("http://h:2", "e" * 32, "environment")


def test_the_credentials_file_in_the_working_directory_is_found(stored: Path) -> None:
    profile = resolve(ConnectionFlags(), {}, stored.parent)
    assert profile.auth == AccessKey("AKFILE00000000000001", "FileSecret")
    assert (profile.endpoint, profile.project_id) == ("http://127.0.0.1:9999", "f" * 32)
    assert profile.source == str(stored)


def test_a_project_id_from_the_file_is_not_mixed_into_other_credentials(stored: Path) -> None:
    profile = resolve(ConnectionFlags(ak="AKFLAG", sk="FlagSecret"), {}, stored.parent)
    assert profile.project_id is None  # looked up through /v3/projects by the client
    assert profile.endpoint == "http://127.0.0.1:9999"  # the file still says where the server is


def test_an_explicit_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        resolve(ConnectionFlags(credentials=tmp_path / "nope.json"), {}, tmp_path)


def test_a_broken_file_is_reported_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"secretKey": "TopSecret"')
    with pytest.raises(CredentialsError) as caught:
        resolve(ConnectionFlags(), {"MESHUP_CREDENTIALS": str(path)}, tmp_path)
    assert "TopSecret" not in str(caught.value)


def test_half_a_key_pair_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="--sk is missing"):
        resolve(ConnectionFlags(ak="AK"), {}, tmp_path)
    with pytest.raises(CredentialsError, match="HUAWEICLOUD_SDK_AK is missing"):
        resolve(ConnectionFlags(), {"HUAWEICLOUD_SDK_SK": "x"}, tmp_path)


def test_nothing_at_all_names_every_source(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no credentials") as caught:
        resolve(ConnectionFlags(), {}, tmp_path)
    assert "HUAWEICLOUD_SDK_AK" in str(caught.value) and "--user" in str(caught.value)
    assert resolve(ConnectionFlags(ak="a", sk="b"), {}, tmp_path).endpoint == DEFAULT_ENDPOINT


def test_password_login_takes_the_password_of_the_same_user_from_the_file(stored: Path) -> None:
    profile = resolve(ConnectionFlags(user="demo-admin"), SDK_ENV, stored.parent)
    assert profile.auth == Password("demo-admin", "demo", "Stored-Passw0rd!")
    assert profile.project_id == "e" * 32  # the environment's project id still wins


def test_password_login_never_borrows_another_users_password(stored: Path) -> None:
    profile = resolve(ConnectionFlags(user="alice"), {}, stored.parent)
    assert profile.auth == Password("alice", "demo", None)  # asked for on a terminal
    profile = resolve(
        ConnectionFlags(user="alice", password="pw", domain="acme", project="eu"), {}, stored.parent
    )
    assert profile.auth == Password("alice", "acme", "pw")
    assert (profile.project_id, profile.project_name) == (None, "eu")


def test_password_login_needs_a_domain(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="--domain"):
        resolve(ConnectionFlags(), {"MESHUP_USER": "alice", "MESHUP_PASSWORD": "pw"}, tmp_path)


def test_secrets_stay_out_of_reprs() -> None:
    text = repr(ConnectionFlags(sk="FlagSecret", password="pw")) + repr(AccessKey("AK", "Sec", "tok"))
    text += repr(Password("u", "d", "Passw0rd"))
    assert "FlagSecret" not in text and "Sec'" not in text and "tok'" not in text and "Passw0rd" not in text


def test_an_endpoint_needs_a_scheme(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="http"):
        resolve(ConnectionFlags(endpoint="127.0.0.1:8080", ak="a", sk="b"), {}, tmp_path)
