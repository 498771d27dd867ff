"""Where the client's endpoint and credentials come from.

Each source is taken whole, the first that has credentials winning: flags, then the environment
(the official SDK's ``HUAWEICLOUD_SDK_*`` variables, so one shell set-up serves both), then the
``meshup-credentials.json`` that ``meshup serve`` writes on its first start. Mixing an access key
of one source with a secret key of another would only ever produce a signature mismatch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshup.client.errors import CredentialsError

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
CREDENTIALS_FILE = "meshup-credentials.json"

ENV_ENDPOINT = "MESHUP_ENDPOINT"
ENV_CREDENTIALS = "MESHUP_CREDENTIALS"
ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a variable name
ENV_USER = "MESHUP_USER"
ENV_PASSWORD = "MESHUP_PASSWORD"  # noqa: S105 - the variable's name, not a password
ENV_DOMAIN = "MESHUP_DOMAIN"
ENV_PROJECT = "MESHUP_PROJECT"


@dataclass(frozen=True, slots=True)
class AccessKey:
    """AK/SK request signing, as the official SDK does it."""

    ak: str
    sk: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Password:
    """A Keystone password login; ``password`` is None when it must still be asked for."""

    user: str
    domain: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Profile:
    endpoint: str
    auth: AccessKey | Password
    project_id: str | None  # None: found by project name, or the only project of the caller
    project_name: str | None
    source: str  # where the credentials came from, for messages


@dataclass(frozen=True, slots=True)
class ConnectionFlags:
    """The connection options of a client command, as given (None = not given)."""

    endpoint: str | None = None
    ak: str | None = None
    sk: str | None = field(default=None, repr=False)
    project_id: str | None = None
    project: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    domain: str | None = None
    credentials: Path | None = None


def load_credentials_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # Never echo the content: it holds a password and a secret key.
        raise CredentialsError(
            f"credentials file {path} is not readable JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"credentials file {path} is not a JSON object")
    return {key: value for key, value in data.items() if isinstance(value, str) and value}


def _credentials_path(flags: ConnectionFlags, env: Mapping[str, str], cwd: Path) -> Path | None:
    if flags.credentials is not None:
        return flags.credentials
    if env.get(ENV_CREDENTIALS):
        return Path(env[ENV_CREDENTIALS])
    default = cwd / CREDENTIALS_FILE
    return default if default.is_file() else None


def _pair(ak: str | None, sk: str | None, where: str, ak_name: str, sk_name: str) -> tuple[str, str] | None:
    if not ak and not sk:
        return None
    if not ak or not sk:
        missing = ak_name if not ak else sk_name
        raise CredentialsError(f"{where}: {missing} is missing (an access key needs its secret key)")
    return ak, sk


def resolve(flags: ConnectionFlags, env: Mapping[str, str], cwd: Path) -> Profile:
    """The endpoint, credentials and project to use; raises :class:`CredentialsError`."""
    path = _credentials_path(flags, env, cwd)
    stored = load_credentials_file(path) if path is not None else {}
    endpoint = (flags.endpoint or env.get(ENV_ENDPOINT) or stored.get("endpoint") or DEFAULT_ENDPOINT).rstrip(
        "/"
    )
    if not endpoint.startswith(("http://", "https://")):
        raise CredentialsError(f"endpoint {endpoint} must start with http:// or https://")
    project_id = flags.project_id or env.get(ENV_PROJECT_ID)
    project_name = flags.project or env.get(ENV_PROJECT)

    user = flags.user or env.get(ENV_USER)
    if user:
        domain = flags.domain or env.get(ENV_DOMAIN) or stored.get("domainName")
        if not domain:
            raise CredentialsError(
                f"user {user}: give the account (domain) name with --domain or {ENV_DOMAIN}"
            )
        password = flags.password or env.get(ENV_PASSWORD)
        if password is None and stored.get("userName") == user and stored.get("domainName") == domain:
            password = stored.get("password")
        if project_id is None and project_name is None:
            project_id = stored.get("projectId")
        return Profile(endpoint, Password(user, domain, password), project_id, project_name, "password")

    pair = _pair(flags.ak, flags.sk, "flags", "--ak", "--sk")
    if pair is not None:
        return Profile(endpoint, AccessKey(*pair), project_id, project_name, "flags")
    pair = _pair(env.get(ENV_AK), env.get(ENV_SK), "environment", ENV_AK, ENV_SK)
    if pair is not None:
        token = env.get(ENV_SECURITY_TOKEN) or None
        return Profile(endpoint, AccessKey(*pair, token), project_id, project_name, "environment")
    if path is not None:
        pair = _pair(stored.get("accessKey"), stored.get("secretKey"), str(path), "accessKey", "secretKey")
        if pair is not None:
            if project_id is None and project_name is None:
                project_id = stored.get("projectId")
            return Profile(endpoint, AccessKey(*pair), project_id, project_name, str(path))
    raise CredentialsError(
        f"no credentials: give --ak/--sk, set {ENV_AK}/{ENV_SK}, log in with --user, "
        f"or run where {CREDENTIALS_FILE} is (or point --credentials at it)"
    )
