"""Identity (Keystone v3) documents, for the OpenAPI schema (parsing lives in iam.login)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NamedRef(_Open):
    id: str | None = None
    name: str | None = None


class PasswordUser(_Open):
    id: str | None = Field(None, description="User id, or name + domain.")
    name: str | None = None
    password: str
    domain: NamedRef | None = None


class PasswordMethod(_Open):
    user: PasswordUser


class Identity(_Open):
    methods: list[str] = Field(description='["password"]')
    password: PasswordMethod


class ProjectScope(_Open):
    id: str | None = None
    name: str | None = Field(None, description="The region, e.g. cn-north-4 (with domain).")
    domain: NamedRef | None = None


class Scope(_Open):
    project: ProjectScope | None = None
    domain: NamedRef | None = None


class Auth(_Open):
    identity: Identity
    scope: Scope | None = Field(None, description="ASM needs a project-scoped token.")


class TokenRequest(_Open):
    auth: Auth


class TokenResponse(_Open):
    token: dict[str, Any] = Field(
        description="methods, issued_at, expires_at, user, project, roles, catalog (the asm endpoint)"
    )


class KeystoneErrorBody(_Open):
    code: int
    title: str
    message: str


class KeystoneError(_Open):
    error: KeystoneErrorBody


class ProjectList(_Open):
    projects: list[dict[str, Any]] = Field(description="id, name (region), domain_id, enabled")
