"""Who is calling: accounts, users, keys and the principal a request acts as."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from meshup.iam.policy import Grant

_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits


def new_hex_id() -> str:
    """Account, project and user ids: 32 lowercase hex characters."""
    return secrets.token_hex(16)


def new_access_key() -> str:
    """20 upper-case alphanumerics, like Huawei's AKs."""
    return "".join(secrets.choice(_AK_ALPHABET) for _ in range(20))


def new_secret_key() -> str:
    """40 alphanumerics, like Huawei's SKs."""
    return "".join(secrets.choice(_SK_ALPHABET) for _ in range(40))


def new_password() -> str:
    """A random password that satisfies the usual complexity rules."""
    core = "".join(secrets.choice(_SK_ALPHABET) for _ in range(20))
    return f"Mu-{core}-9"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class User:
    id: str
    account_id: str
    name: str
    is_root: bool
    enabled: bool
    password_version: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller after authentication, with everything authorization needs."""

    account: Account
    user: User
    grants: tuple[Grant, ...]
    projects: Mapping[str, str]  # project id -> project name (region) of the account
    via: str  # "token" or "aksk", for the access log and metrics

    @property
    def label(self) -> str:
        return f"{self.account.name}/{self.user.name}"


@dataclass(frozen=True, slots=True)
class AccessKey:
    ak: str
    user_id: str
    secret_key: str
    security_token_sha256: str | None
    expires_at: datetime | None
    enabled: bool
