"""Identity (Keystone v3) documents, for the OpenAPI schema (parsing lives in iam.login).

The token request is described by hand as JSON Schema because it must say exactly what
``iam.login.parse_login`` accepts, alternatives included (a user by id, or by name with its
domain; a project by id, or by name with its domain; ``methods`` containing ``"password"``).
Unknown members are ignored, as Keystone ignores them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_REF = "#/components/schemas/"

# A name, id or password: what iam.login._text accepts (null counts as absent where optional).
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000]*$"}
_OPTIONAL_TEXT: dict[str, Any] = {**_TEXT, "type": ["string", "null"]}


def _given(*names: str) -> dict[str, Any]:
    """Members that must be present and not null."""
    return {"required": list(names), "properties": {name: {"type": "string"} for name in names}}


_NAMED_REF: dict[str, Any] = {
    "type": "object",
    "properties": {"id": _OPTIONAL_TEXT, "name": _OPTIONAL_TEXT},
}
_NAMED: dict[str, Any] = {"type": "object", "anyOf": [_given("id"), _given("name")]}


def _by_id_or_name_in_domain(description: str) -> dict[str, Any]:
    by_name = _given("name")
    by_name["required"].append("domain")
    by_name["properties"]["domain"] = _NAMED
    return {"description": description, "anyOf": [_given("id"), by_name]}


TOKEN_REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "KeystoneNamedRef": {**_NAMED_REF, "description": "A domain by id or by name."},
    "KeystonePasswordUser": {
        "type": "object",
        "required": ["password"],
        "properties": {
            "id": _OPTIONAL_TEXT,
            "name": _OPTIONAL_TEXT,
            "password": _TEXT,
            "domain": {"anyOf": [{"$ref": _REF + "KeystoneNamedRef"}, {"type": "null"}]},
        },
        **_by_id_or_name_in_domain("The user by id, or by name with its domain (id or name)."),
    },
    "KeystoneIdentity": {
        "type": "object",
        "required": ["methods", "password"],
        "properties": {
            "methods": {
                "type": "array",
                "contains": {"const": "password"},
                "description": 'Must include "password", the only method; others are ignored.',
            },
            "password": {
                "type": "object",
                "required": ["user"],
                "properties": {"user": {"$ref": _REF + "KeystonePasswordUser"}},
            },
        },
    },
    "KeystoneProjectScope": {
        "type": "object",
        "properties": {
            "id": _OPTIONAL_TEXT,
            "name": {**_OPTIONAL_TEXT, "description": "The region, e.g. cn-north-4 (with its domain)."},
            "domain": {"anyOf": [{"$ref": _REF + "KeystoneNamedRef"}, {"type": "null"}]},
        },
        **_by_id_or_name_in_domain("The project by id, or by name with its domain (id or name)."),
    },
    "KeystoneScope": {
        "description": 'ASM needs a project-scoped token; absent, null or "unscoped" asks for an unscoped one.',
        "anyOf": [
            {"type": "null"},
            {"const": "unscoped"},
            {
                "type": "object",
                "required": ["project"],
                "properties": {"project": {"$ref": _REF + "KeystoneProjectScope"}},
            },
            {
                "type": "object",
                "required": ["domain"],
                "not": {"required": ["project"]},
                "properties": {"domain": {**_NAMED_REF, **_NAMED}},
            },
        ],
    },
    "KeystoneAuth": {
        "type": "object",
        "required": ["identity"],
        "properties": {
            "identity": {"$ref": _REF + "KeystoneIdentity"},
            "scope": {"$ref": _REF + "KeystoneScope"},
        },
    },
    "TokenRequest": {
        "type": "object",
        "required": ["auth"],
        "properties": {"auth": {"$ref": _REF + "KeystoneAuth"}},
        "description": "Keystone v3 password authentication (a JSON body of at most 64 KiB).",
    },
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class DomainRef(_Open):
    id: str
    name: str


class TokenUser(_Open):
    id: str
    name: str
    domain: DomainRef


class TokenProject(_Open):
    id: str
    name: str = Field(description="The region, e.g. cn-north-4.")
    domain: DomainRef


class Role(_Open):
    id: str
    name: str


class CatalogEndpoint(_Open):
    id: str
    interface: str
    region: str
    region_id: str
    url: str


class CatalogEntry(_Open):
    type: str
    name: str
    id: str
    endpoints: list[CatalogEndpoint]


class Token(_Open):
    methods: list[str]
    issued_at: str
    expires_at: str
    user: TokenUser
    roles: list[Role]
    project: TokenProject | None = Field(None, description="Present on a project-scoped token.")
    domain: DomainRef | None = Field(None, description="Present on a domain-scoped token.")
    catalog: list[CatalogEntry] | None = Field(None, description="The asm endpoint of a scoped token.")


class TokenResponse(_Open):
    token: Token


class KeystoneErrorBody(_Open):
    code: int
    title: str
    message: str


class KeystoneError(_Open):
    error: KeystoneErrorBody


class Project(_Open):
    id: str
    name: str = Field(description="The region, e.g. cn-north-4.")
    domain_id: str
    enabled: bool


class ProjectList(_Open):
    projects: list[Project]
    links: dict[str, str]
