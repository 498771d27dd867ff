"""Seed files (seed contract): parsing and complete validation into immutable objects.

A seed file is checked as a whole before anything is applied: every problem is collected with the
path of the offending entry (``accounts[0].users[2].accessKeys[0].sk: must be 8-128 printable
characters``) and reported together in one :class:`SeedError`. Nothing partial is ever returned.

Decisions where the contract is silent (all [ours]):

* ``null`` counts as "not given" for optional fields and as missing for required ones.
* Extra keys that are near misses of a known field (``enterpriseProjectID``, ``sidecarVerison``)
  are reported as unknown fields rather than kept.
* Free-form parts (``extra`` of clusters, workloads, faults and meshes; policy documents) must be
  plain JSON data: unquoted YAML dates are rejected (quote them) so that the applier can store them
  in JSON columns. Mappings in the result are plain ``dict`` objects for the same reason; only the
  dataclasses themselves are frozen.
* Ids given in the file are unique across the whole file (accounts, projects, users, meshes, job
  uids, access-key AKs); enterprise-project ids and names are unique within their account.
* Clusters: ``kubernetesVersion`` is required, ``status`` defaults to ``Available``, ``name`` to
  the id; ``nodes.cpu``/``nodes.memory`` accept a number (taken as a string) or a Kubernetes
  quantity; ``masterLabelled`` may not exceed ``count``. Namespace names and labels follow
  Kubernetes syntax; workload names are DNS subdomains, ``replicas`` defaults to 1.
* Enterprise project ``"0"`` may be listed without a name (it is called ``default``).
* Role policies need an explicit ``scope``.
* Jobs: a parent carries the phase and reason derived from its subjobs (a given phase or
  non-empty reason must equal them); ``startTime``/``completionTime`` are derived for parents and
  may be given on leaves only; given timestamps must not go backwards
  (creation <= start <= completion). Any known job type may appear below a root.
* Hostile input: files larger than 64 MiB, documents of more than 1,000,000 values or nested
  more than 64 levels are rejected before validation; YAML duplicate keys are errors.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

from meshup.iam.policy import PolicyError, parse_identity_policy, parse_role_policy
from meshup.jobs.model import JobNode, Phase, derive
from meshup.meshes.versions import catalogue

__all__ = [
    "CLUSTER_STATUSES",
    "JOB_PHASES",
    "JOB_TYPES",
    "MESH_PHASES",
    "ROOT_JOB_TYPES",
    "SeedAccessKey",
    "SeedAccount",
    "SeedCluster",
    "SeedEnterpriseProject",
    "SeedError",
    "SeedFault",
    "SeedFile",
    "SeedGroup",
    "SeedJob",
    "SeedMesh",
    "SeedNamespace",
    "SeedNodes",
    "SeedProject",
    "SeedRolePolicy",
    "SeedUser",
    "SeedWorkload",
    "load_seed",
    "parse_seed",
]

ROOT_JOB_TYPES: tuple[str, ...] = (
    "PreCheck",
    "ControlPlaneUpgrade",
    "DataPlaneUpgrade",
    "Complete",
    "Rollback",
    "CreateMesh",
    "DeleteMesh",
)
"""Types a job tree's root may have: the upgrade steps and the mesh lifecycle jobs."""

JOB_TYPES: tuple[str, ...] = (
    *ROOT_JOB_TYPES,
    "CheckUpgradePath",
    "CheckClusterStatus",
    "CheckClusterVersion",
    "CheckResources",
    "CheckDeprecatedCRDs",
    "CheckGatewayLabels",
    "CheckInjectionLabels",
    "InstallControlPlane",
    "WaitControlPlaneReady",
    "InstallGateways",
    "MigrateNamespace",
    "RelabelNamespace",
    "RestartWorkloads",
    "VerifyProxies",
    "SwitchDefaultRevision",
    "UninstallControlPlane",
    "RemoveGateways",
    "RevertNamespaces",
    "RestoreGateways",
)
"""Every job type (asm-api.md §4); the only types seed jobs and faults may name."""

JOB_PHASES: tuple[str, ...] = tuple(phase.value for phase in Phase)
MESH_PHASES: tuple[str, ...] = (
    "Running",
    "Creating",
    "CreateFailed",
    "Deleting",
    "DeleteFailed",
    "Upgrading",
    "UpgradeFailed",
    "RollingBack",
    "RollbackFailed",
)
CLUSTER_STATUSES: tuple[str, ...] = ("Available", "Unavailable")

MAX_STRING = 4096
MAX_ITEMS = 10_000
MAX_JOB_DEPTH = 6
MAX_JOB_NODES = 10_000
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_VALUES = 1_000_000
MAX_NESTING = 64

# ------------------------------------------------------------------------------------------------
# Result types


class SeedError(ValueError):
    """An invalid seed file; ``errors`` holds every problem as ``"path: message"``."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)

    def __reduce__(self) -> tuple[type[SeedError], tuple[list[str]]]:
        return (SeedError, (self.errors,))


@dataclass(frozen=True, slots=True)
class SeedProject:
    name: str
    id: str | None


@dataclass(frozen=True, slots=True)
class SeedEnterpriseProject:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class SeedAccessKey:
    ak: str
    sk: str
    security_token: str | None
    expires_at: datetime | None
    enabled: bool

    def __repr__(self) -> str:  # never print secrets
        return f"SeedAccessKey(ak={self.ak!r}, expires_at={self.expires_at!r}, enabled={self.enabled!r})"


@dataclass(frozen=True, slots=True)
class SeedRolePolicy:
    scope_kind: Literal["account", "project", "enterprise_project"]
    scope_value: str | None
    policy: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SeedUser:
    name: str
    id: str | None
    root: bool
    enabled: bool
    password: str | None
    groups: tuple[str, ...]
    access_keys: tuple[SeedAccessKey, ...]
    identity_policies: tuple[Mapping[str, Any], ...]
    role_policies: tuple[SeedRolePolicy, ...]
    tags: Mapping[str, str]

    def __repr__(self) -> str:  # never print the password
        return (
            f"SeedUser(name={self.name!r}, id={self.id!r}, root={self.root!r}, enabled={self.enabled!r}, "
            f"groups={self.groups!r}, access_keys={self.access_keys!r})"
        )


@dataclass(frozen=True, slots=True)
class SeedGroup:
    name: str
    identity_policies: tuple[Mapping[str, Any], ...]
    role_policies: tuple[SeedRolePolicy, ...]


@dataclass(frozen=True, slots=True)
class SeedNodes:
    count: int = 3
    cpu: str = "8"
    memory: str = "32Gi"
    master_labelled: int = 3


@dataclass(frozen=True, slots=True)
class SeedWorkload:
    name: str
    replicas: int
    sidecar_version: str | None
    extra: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SeedNamespace:
    name: str
    labels: Mapping[str, str]
    workloads: tuple[SeedWorkload, ...]


@dataclass(frozen=True, slots=True)
class SeedFault:
    job_type: str
    times: int | None
    reason: str
    extra: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SeedCluster:
    id: str
    name: str
    kubernetes_version: str
    status: Literal["Available", "Unavailable"]
    nodes: SeedNodes
    namespaces: tuple[SeedNamespace, ...]
    faults: tuple[SeedFault, ...]
    extra: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SeedJob:
    uid: str | None
    type: str
    target: str
    phase: str | None
    reason: str
    creation_timestamp: datetime | None
    start_time: datetime | None
    completion_time: datetime | None
    subjobs: tuple[SeedJob, ...]


@dataclass(frozen=True, slots=True)
class SeedMesh:
    name: str
    id: str | None
    project: str
    version: str
    enterprise_project_id: str
    tags: tuple[tuple[str, str], ...]
    clusters: tuple[str, ...]
    phase: str
    jobs: tuple[SeedJob, ...]
    extra: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SeedAccount:
    name: str
    id: str | None
    enabled: bool
    projects: tuple[SeedProject, ...]
    enterprise_projects: tuple[SeedEnterpriseProject, ...]
    users: tuple[SeedUser, ...]
    groups: tuple[SeedGroup, ...]
    clusters: tuple[SeedCluster, ...]
    meshes: tuple[SeedMesh, ...]


@dataclass(frozen=True, slots=True)
class SeedFile:
    accounts: tuple[SeedAccount, ...]


# ------------------------------------------------------------------------------------------------
# Rules for strings


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    message: str
    max_len: int

    def ok(self, text: str) -> bool:
        return len(text) <= self.max_len and self.pattern.fullmatch(text) is not None


def _rule(pattern: str, message: str, max_len: int = MAX_STRING) -> _Rule:
    return _Rule(re.compile(pattern, re.DOTALL), message, max_len)


_NO_CONTROL = r"[^\x00-\x1f\x7f]"
ACCOUNT_NAME = _rule(r"[A-Za-z0-9_-]{1,64}", "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
HEX32 = _rule(r"[0-9a-f]{32}", "must be 32 lowercase hexadecimal characters")
PROJECT_NAME = _rule(r"[a-z0-9-]{2,64}", "must be a region id: 2-64 characters of a-z, 0-9 and -")
EP_ID = _rule(r"[A-Za-z0-9-]{1,64}", 'must be "0" or 1-64 characters of A-Z, a-z, 0-9 and -')
DISPLAY_NAME = _rule(rf"(?=.*\S){_NO_CONTROL}{{1,64}}", "must be 1-64 characters without control characters")
USER_NAME = _rule(r"[A-Za-z0-9_.@-]{1,64}", "must be 1-64 characters of A-Z, a-z, 0-9, _, ., @ and -")
PASSWORD = _rule(rf"{_NO_CONTROL}{{8,128}}", "must be 8-128 characters without control characters")
AK = _rule(r"[A-Za-z0-9]{1,128}", "must be 1-128 letters and digits")
SK = _rule(r"[\x20-\x7e]{8,128}", "must be 8-128 printable characters")
SECURITY_TOKEN = _rule(r"[\x20-\x7e]{1,4096}", "must be 1-4096 printable characters")
TAG_KEY = _rule(r"(?!_sys_).{1,128}", "must be 1-128 characters and not start with _sys_")
TAG_VALUE = _rule(r".{0,255}", "must be at most 255 characters")
CLUSTER_ID = _rule(r"[a-z0-9-]{1,64}", "must be 1-64 characters of a-z, 0-9 and -")
K8S_VERSION = _rule(
    r"v?[0-9]+\.[0-9]+(\.[0-9]+)?([-+][0-9A-Za-z.-]+)?",
    "must be a Kubernetes version like 1.28 or v1.28.3",
    64,
)
QUANTITY = _rule(
    r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?",
    "must be a Kubernetes quantity like 8, 500m or 32Gi",
    64,
)
DNS_LABEL = _rule(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
    "must be a DNS label: 1-63 characters of a-z, 0-9 and -, starting and ending with a letter or digit",
)
WORKLOAD_NAME = _rule(
    r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?",
    "must be a Kubernetes name: 1-253 characters of a-z, 0-9, . and -, starting and ending with a "
    "letter or digit",
)
LABEL_KEY = _rule(
    r"([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?",
    "must be a Kubernetes label key: an optional DNS prefix and /, then 1-63 characters of "
    "A-Z, a-z, 0-9, _, . and -, starting and ending with a letter or digit",
)
LABEL_VALUE = _rule(
    r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?",
    "must be a Kubernetes label value: at most 63 characters of A-Z, a-z, 0-9, _, . and -, "
    "starting and ending with a letter or digit",
)
MESH_NAME = _rule(
    r"[a-z][a-z0-9-]{2,62}[a-z0-9]",
    "must be 4-64 characters of a-z, 0-9 and -, start with a letter and not end with -",
)
MESH_VERSION = _rule(r"[0-9A-Za-z.+-]{1,32}", "must be a mesh version like 1.18.7-r5")
UUID = _rule(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "must be a lowercase UUID like 2d1c7a00-0000-4000-8000-000000000001",
)
SIDECAR_VERSION = _rule(rf"(?=.*\S){_NO_CONTROL}{{1,64}}", "must be 1-64 characters")
JOB_TYPE = _rule(r"[A-Za-z]{1,48}", "must be 1-48 letters")
FREE_TEXT = _rule(r".*", f"must be at most {MAX_STRING} characters")

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _one_of(values: Iterable[str]) -> str:
    return "must be one of " + ", ".join(values)


# ------------------------------------------------------------------------------------------------
# Path-tracking checks


_PLAIN_KEY = re.compile(r"[^.\[\]\s\"]{1,64}")


def _at(path: str, key: str) -> str:
    """``path.key``; keys that would make the path ambiguous (or very long) go in brackets."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    shown = key if len(key) <= 64 else key[:64] + "..."
    return f"{path}[{json.dumps(shown)}]"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime | date):
        return "a date (quote it)"
    return type(value).__name__


class _Checker:
    """Collects errors; every check returns a usable value (a placeholder after an error)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, value: object, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {_type_name(value)}")
            return None
        if len(value) > MAX_ITEMS:
            self.fail(path, f"must have at most {MAX_ITEMS} entries")
            return None
        bad = [key for key in value if not isinstance(key, str)]
        if bad:
            self.fail(path, f"keys must be strings (found {bad[0]!r})")
            return None
        return value

    def sequence(self, value: object, path: str) -> list[Any] | None:
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {_type_name(value)}")
            return None
        if len(value) > MAX_ITEMS:
            self.fail(path, f"must have at most {MAX_ITEMS} entries")
            return None
        return value

    def text(self, value: object, path: str, rule: _Rule) -> str | None:
        if not isinstance(value, str):
            hint = " (put it in quotes)" if isinstance(value, int | float | datetime | date) else ""
            self.fail(path, f"must be a string{hint}")
            return None
        if not rule.ok(value):
            self.fail(path, rule.message)
            return None
        return value

    def plain(self, value: object, path: str) -> Any:
        """A copy of JSON-compatible data (for extras and policy documents), or None after errors."""
        before = len(self.errors)
        copied = self._plain(value, path)
        return copied if len(self.errors) == before else None

    def _plain(self, value: object, path: str) -> Any:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                self.fail(path, "must be a finite number")
            return value
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                self.fail(path, f"must be at most {MAX_STRING} characters")
            return value
        if isinstance(value, list):
            items = self.sequence(value, path)
            return [self._plain(item, f"{path}[{i}]") for i, item in enumerate(items or ())]
        if isinstance(value, dict):
            entries = self.mapping(value, path)
            return {key: self._plain(item, _at(path, key)) for key, item in (entries or {}).items()}
        if isinstance(value, datetime | date):
            self.fail(path, "must be plain data; put dates and times in quotes")
            return None
        self.fail(
            path,
            f"must be plain data (string, number, boolean, null, list or mapping), not {_type_name(value)}",
        )
        return None


class _Fields:
    """One mapping of the document at ``path`` with its known keys; unknown keys are errors or,
    with ``keep_extra``, collected as plain data into ``extra``."""

    def __init__(
        self,
        checker: _Checker,
        data: dict[str, Any],
        path: str,
        known: Iterable[str],
        *,
        keep_extra: bool = False,
    ) -> None:
        self.c = checker
        self.data = data
        self.path = path
        self.extra: dict[str, Any] = {}
        known = tuple(known)
        for key, value in data.items():
            if key in known:
                continue
            # A near miss of a known field is a typo, never an extra (enterpriseProjectID would
            # otherwise silently put a mesh in the default enterprise project).
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8 if keep_extra else 0.6)
            if keep_extra and not close:
                self.extra[key] = checker.plain(value, self.at(key))
            else:
                hint = f" (did you mean {close[0]}?)" if close else ""
                checker.fail(self.at(key), f"unknown field{hint}")

    def at(self, key: str) -> str:
        return _at(self.path, key)

    def given(self, key: str) -> bool:
        return self.data.get(key) is not None

    def required(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            self.c.fail(self.at(key), "is required")
        return value

    def text(self, key: str, rule: _Rule = FREE_TEXT, *, required: bool = False) -> str | None:
        value = self.required(key) if required else self.data.get(key)
        if value is None:
            return None
        return self.c.text(value, self.at(key), rule)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.c.fail(self.at(key), "must be a string")
            return default
        if value not in choices:
            self.c.fail(self.at(key), _one_of(choices))
            return default
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.c.fail(self.at(key), "must be a boolean (true or false)")
            return default
        return value

    def integer(self, key: str, default: int | None, minimum: int) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.c.fail(self.at(key), "must be an integer")
            return default
        if value < minimum:
            self.c.fail(self.at(key), f"must be at least {minimum}")
            return default
        if value > 1_000_000_000:
            self.c.fail(self.at(key), "must be at most 1000000000")
            return default
        return value

    def timestamp(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None:
            return None
        path = self.at(key)
        if isinstance(value, datetime):  # YAML reads unquoted timestamps itself
            if value.tzinfo is None:
                self.c.fail(path, "must be an RFC 3339 timestamp with a time zone, like 2030-01-01T00:00:00Z")
                return None
            return value.astimezone(UTC)
        if not isinstance(value, str) or len(value) > 64 or _RFC3339.fullmatch(value) is None:
            self.c.fail(path, "must be an RFC 3339 timestamp, like 2030-01-01T00:00:00Z")
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            self.c.fail(path, "must be an RFC 3339 timestamp, like 2030-01-01T00:00:00Z (not a real date)")
            return None
        return parsed.astimezone(UTC)

    def items(self, key: str, *, required: bool = False) -> list[tuple[str, Any]]:
        """``(path, item)`` for each entry of the list under ``key`` (absent: no entries)."""
        value = self.required(key) if required else self.data.get(key)
        if value is None:
            return []
        path = self.at(key)
        entries = self.c.sequence(value, path)
        return [(f"{path}[{i}]", item) for i, item in enumerate(entries or ())]

    def string_map(self, key: str, key_rule: _Rule, value_rule: _Rule) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        path = self.at(key)
        entries = self.c.mapping(value, path)
        result: dict[str, str] = {}
        for name, item in (entries or {}).items():
            item_path = _at(path, name)
            if not key_rule.ok(name):
                self.c.fail(item_path, f"key {key_rule.message}")
            text = self.c.text(item, item_path, value_rule)
            if text is not None:
                result[name] = text
        return result


class _Unique:
    """First path at which each value was seen, to report duplicates with both places."""

    def __init__(self, c: _Checker, what: str) -> None:
        self.c = c
        self.what = what
        self.seen: dict[object, str] = {}

    def add(self, value: object, path: str, label: str | None = None) -> bool:
        if value is None:
            return True
        first = self.seen.get(value)
        if first is not None:
            self.c.fail(path, f"duplicate {self.what} {label or value} (also at {first})")
            return False
        self.seen[value] = path
        return True


# ------------------------------------------------------------------------------------------------
# Loading


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def load_seed(path: str | Path) -> SeedFile:
    """Read and validate a seed file: YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SeedError(
            [f"{file}: unsupported file type {suffix or '(no extension)'}; use .yaml, .yml or .json"]
        )
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise SeedError([f"{file}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"])
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedError([f"{file}: not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise SeedError([f"{file}: cannot read: {exc.strerror or exc}"]) from None
    if suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise SeedError(
                [f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
            ) from None
        except ValueError as exc:
            raise SeedError([f"{file}: invalid JSON: {exc}"]) from None
        except RecursionError:
            raise SeedError([f"{file}: invalid JSON: nested too deeply"]) from None
    else:
        loader = _Loader(text)
        try:
            data = loader.get_single_data()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "not valid"
            raise SeedError([f"{file}: invalid YAML{where}: {problem}"]) from None
        except yaml.YAMLError as exc:
            raise SeedError([f"{file}: invalid YAML: {exc}"]) from None
        except RecursionError:
            raise SeedError([f"{file}: invalid YAML: nested too deeply"]) from None
        finally:
            loader.dispose()
    return parse_seed(data)


def _check_size(data: object) -> None:
    """Bound the work validation may do (YAML aliases can multiply a small file)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise SeedError([f"(document): more than {MAX_VALUES} values"])
        if depth > MAX_NESTING:
            raise SeedError([f"(document): nested more than {MAX_NESTING} levels deep"])
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


# ------------------------------------------------------------------------------------------------
# Validation


def parse_seed(data: object) -> SeedFile:
    """Validate an already-loaded seed document; raises SeedError listing every problem."""
    _check_size(data)
    c = _Checker()
    if not isinstance(data, dict):
        raise SeedError([f"(document): must be a mapping with an accounts list, not {_type_name(data)}"])
    top = c.mapping(data, "(document)")
    accounts: list[SeedAccount] = []
    if top is not None:
        fields = _Fields(c, top, "", ("accounts",))
        seen = _FileWide(c)
        for path, item in fields.items("accounts", required=True):
            account = _account(c, item, path, seen)
            if account is not None:
                accounts.append(account)
    if c.errors:
        raise SeedError(c.errors)
    return SeedFile(tuple(accounts))


class _FileWide:
    """Values that must be unique across the whole file."""

    def __init__(self, c: _Checker) -> None:
        self.account_names = _Unique(c, "account name")
        self.account_ids = _Unique(c, "account id")
        self.project_ids = _Unique(c, "project id")
        self.user_ids = _Unique(c, "user id")
        self.aks = _Unique(c, "access key")
        self.mesh_ids = _Unique(c, "mesh id")
        self.job_uids = _Unique(c, "job uid")


@dataclass(slots=True)
class _AccountNames:
    """What entries of one account may refer to."""

    projects: set[str]
    enterprise_projects: set[str]
    groups: set[str]


def _account(c: _Checker, value: object, path: str, seen: _FileWide) -> SeedAccount | None:
    data = c.mapping(value, path)
    if data is None:
        return None
    f = _Fields(
        c,
        data,
        path,
        ("name", "id", "enabled", "projects", "enterpriseProjects", "users", "groups", "clusters", "meshes"),
    )
    name = f.text("name", ACCOUNT_NAME, required=True)
    seen.account_names.add(name, f.at("name"))
    account_id = f.text("id", HEX32)
    seen.account_ids.add(account_id, f.at("id"))

    projects = _projects(c, f, seen)
    enterprise_projects = _enterprise_projects(c, f)
    # References are checked against what is declared, valid or not: a bad declaration is
    # reported once, not again at every reference to it.
    names = _AccountNames(
        projects=_declared(f, "projects", "name"),
        enterprise_projects={"0", *_declared(f, "enterpriseProjects", "id")},
        groups=_declared(f, "groups", "name"),
    )
    groups = _groups(c, f, names)
    users = _users(c, f, names, seen)
    clusters = _clusters(c, f)
    meshes = _meshes(c, f, names, seen)
    return SeedAccount(
        name=name or "",
        id=account_id,
        enabled=f.flag("enabled", True),
        projects=projects,
        enterprise_projects=enterprise_projects,
        users=users,
        groups=groups,
        clusters=clusters,
        meshes=meshes,
    )


def _declared(account: _Fields, key: str, field: str) -> set[str]:
    entries = account.data.get(key)
    if not isinstance(entries, list):
        return set()
    return {e[field] for e in entries if isinstance(e, dict) and isinstance(e.get(field), str)}


def _projects(c: _Checker, account: _Fields, seen: _FileWide) -> tuple[SeedProject, ...]:
    names = _Unique(c, "project name")
    result = []
    for path, item in account.items("projects"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("name", "id"))
        name = f.text("name", PROJECT_NAME, required=True)
        names.add(name, f.at("name"))
        project_id = f.text("id", HEX32)
        seen.project_ids.add(project_id, f.at("id"))
        if name is not None:
            result.append(SeedProject(name, project_id))
    return tuple(result)


def _enterprise_projects(c: _Checker, account: _Fields) -> tuple[SeedEnterpriseProject, ...]:
    ids = _Unique(c, "enterprise project id")
    names = _Unique(c, "enterprise project name")
    result = []
    for path, item in account.items("enterpriseProjects"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("id", "name"))
        ep_id = f.text("id", EP_ID, required=True)
        ids.add(ep_id, f.at("id"))
        if ep_id == "0" and not f.given("name"):
            name: str | None = "default"
        else:
            name = f.text("name", DISPLAY_NAME, required=True)
        names.add(name, f.at("name"))
        if ep_id is not None and name is not None:
            result.append(SeedEnterpriseProject(ep_id, name))
    return tuple(result)


def _groups(c: _Checker, account: _Fields, names: _AccountNames) -> tuple[SeedGroup, ...]:
    unique = _Unique(c, "group name")
    result = []
    for path, item in account.items("groups"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("name", "identityPolicies", "rolePolicies"))
        name = f.text("name", USER_NAME, required=True)
        unique.add(name, f.at("name"))
        identity, role = _policies(c, f, names)
        if name is not None:
            result.append(SeedGroup(name, identity, role))
    return tuple(result)


def _users(c: _Checker, account: _Fields, names: _AccountNames, seen: _FileWide) -> tuple[SeedUser, ...]:
    unique = _Unique(c, "user name")
    root_at: str | None = None
    result = []
    for path, item in account.items("users"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(
            c,
            data,
            path,
            (
                "name",
                "id",
                "root",
                "enabled",
                "password",
                "groups",
                "accessKeys",
                "identityPolicies",
                "rolePolicies",
                "tags",
            ),
        )
        name = f.text("name", USER_NAME, required=True)
        unique.add(name, f.at("name"))
        user_id = f.text("id", HEX32)
        seen.user_ids.add(user_id, f.at("id"))
        root = f.flag("root", False)
        if root:
            if root_at is not None:
                c.fail(f.at("root"), f"an account has at most one root user (already {root_at})")
            else:
                root_at = path
        groups: list[str] = []
        for group_path, group in f.items("groups"):
            group_name = c.text(group, group_path, USER_NAME)
            if group_name is None:
                continue
            if group_name not in names.groups:
                c.fail(group_path, f"unknown group {group_name} (declare it in the account's groups)")
            elif group_name in groups:
                c.fail(group_path, f"group {group_name} listed twice")
            else:
                groups.append(group_name)
        access_keys = tuple(
            key
            for key_path, raw in f.items("accessKeys")
            if (key := _access_key(c, raw, key_path, seen)) is not None
        )
        identity, role = _policies(c, f, names)
        if name is not None:
            result.append(
                SeedUser(
                    name=name,
                    id=user_id,
                    root=root,
                    enabled=f.flag("enabled", True),
                    password=f.text("password", PASSWORD),
                    groups=tuple(groups),
                    access_keys=access_keys,
                    identity_policies=identity,
                    role_policies=role,
                    tags=f.string_map("tags", TAG_KEY, TAG_VALUE),
                )
            )
    return tuple(result)


def _access_key(c: _Checker, value: object, path: str, seen: _FileWide) -> SeedAccessKey | None:
    data = c.mapping(value, path)
    if data is None:
        return None
    f = _Fields(c, data, path, ("ak", "sk", "securityToken", "expiresAt", "enabled"))
    ak = f.text("ak", AK, required=True)
    seen.aks.add(ak, f.at("ak"))
    sk = f.text("sk", SK, required=True)
    token = f.text("securityToken", SECURITY_TOKEN)
    expires_at = f.timestamp("expiresAt")
    if f.given("securityToken") and not f.given("expiresAt"):
        c.fail(f.at("expiresAt"), "is required with securityToken (temporary keys need expiresAt)")
    enabled = f.flag("enabled", True)
    if ak is None or sk is None:
        return None
    return SeedAccessKey(ak, sk, token, expires_at, enabled)


def _policies(
    c: _Checker, owner: _Fields, names: _AccountNames
) -> tuple[tuple[dict[str, Any], ...], tuple[SeedRolePolicy, ...]]:
    identity = []
    for path, item in owner.items("identityPolicies"):
        doc = _policy_document(c, item, path, parse_identity_policy)
        if doc is not None:
            identity.append(doc)
    role = []
    for path, item in owner.items("rolePolicies"):
        grant = _role_policy(c, item, path, names)
        if grant is not None:
            role.append(grant)
    return tuple(identity), tuple(role)


def _policy_document(
    c: _Checker, value: object, path: str, parse: Callable[[object], object]
) -> dict[str, Any] | None:
    data = c.mapping(value, path)
    if data is None:
        return None
    doc = c.plain(data, path)
    if not isinstance(doc, dict):
        return None
    try:
        parse(json.loads(json.dumps(doc)))  # the parser sees a copy it may not alter ours through
    except PolicyError as exc:
        c.errors.append(str(exc.prefixed(path)))
        return None
    version = doc.get("Version")
    if isinstance(version, float):  # YAML: Version: 5.0 unquoted; the parser accepted it
        doc["Version"] = str(version)
    return doc


def _role_policy(c: _Checker, value: object, path: str, names: _AccountNames) -> SeedRolePolicy | None:
    data = c.mapping(value, path)
    if data is None:
        return None
    f = _Fields(c, data, path, ("scope", "policy"))
    scope = _scope(c, f.required("scope"), f.at("scope"), names)
    policy_value = f.required("policy")
    doc = (
        None if policy_value is None else _policy_document(c, policy_value, f.at("policy"), parse_role_policy)
    )
    if scope is None or doc is None:
        return None
    return SeedRolePolicy(scope[0], scope[1], doc)


_ScopeKind = Literal["account", "project", "enterprise_project"]
_SCOPE_FORMS = "must be account, {account: true}, {project: <project name>} or {enterpriseProject: <id>}"


def _scope(
    c: _Checker, value: object, path: str, names: _AccountNames
) -> tuple[_ScopeKind, str | None] | None:
    if value is None:
        return None
    if value == "account":
        return ("account", None)
    if not isinstance(value, dict) or len(value) != 1:
        c.fail(path, _SCOPE_FORMS)
        return None
    ((key, given),) = value.items()
    key_path = _at(path, str(key))
    if key == "account":
        if given is not True:
            c.fail(key_path, "must be true")
            return None
        return ("account", None)
    if key == "project":
        project = c.text(given, key_path, PROJECT_NAME)
        if project is None:
            return None
        if project not in names.projects:
            c.fail(key_path, f"unknown project {project} (declare it in the account's projects)")
            return None
        return ("project", project)
    if key == "enterpriseProject":
        ep = c.text(given, key_path, EP_ID)
        if ep is None:
            return None
        if ep not in names.enterprise_projects:
            c.fail(
                key_path, f"unknown enterprise project {ep} (declare it in the account's enterpriseProjects)"
            )
            return None
        return ("enterprise_project", ep)
    c.fail(key_path, f"unknown field; scope {_SCOPE_FORMS}")
    return None


# Clusters ---------------------------------------------------------------------------------------


def _clusters(c: _Checker, account: _Fields) -> tuple[SeedCluster, ...]:
    ids = _Unique(c, "cluster id")
    result = []
    for path, item in account.items("clusters"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(
            c,
            data,
            path,
            ("id", "name", "kubernetesVersion", "status", "nodes", "namespaces", "faults"),
            keep_extra=True,
        )
        cluster_id = f.text("id", CLUSTER_ID, required=True)
        ids.add(cluster_id, f.at("id"))
        name = f.text("name", DISPLAY_NAME)
        version = f.text("kubernetesVersion", K8S_VERSION, required=True)
        status: Literal["Available", "Unavailable"] = (
            "Unavailable"
            if f.choice("status", CLUSTER_STATUSES, "Available") == "Unavailable"
            else "Available"
        )
        nodes = _nodes(c, f)
        namespaces = _namespaces(c, f)
        faults = _faults(c, f)
        if cluster_id is not None and version is not None:
            result.append(
                SeedCluster(
                    id=cluster_id,
                    name=name or cluster_id,
                    kubernetes_version=version,
                    status=status,
                    nodes=nodes,
                    namespaces=namespaces,
                    faults=faults,
                    extra=f.extra,
                )
            )
    return tuple(result)


def _quantity(c: _Checker, f: _Fields, key: str, default: str) -> str:
    value = f.data.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return c.text(value, f.at(key), QUANTITY) or default


def _nodes(c: _Checker, cluster: _Fields) -> SeedNodes:
    value = cluster.data.get("nodes")
    if value is None:
        return SeedNodes()
    data = c.mapping(value, cluster.at("nodes"))
    if data is None:
        return SeedNodes()
    f = _Fields(c, data, cluster.at("nodes"), ("count", "cpu", "memory", "masterLabelled"))
    count = f.integer("count", 3, 1) or 3
    master_labelled = f.integer("masterLabelled", count, 0)
    if master_labelled is None:
        master_labelled = count
    elif master_labelled > count:
        c.fail(f.at("masterLabelled"), f"must not exceed count ({count})")
    return SeedNodes(
        count=count,
        cpu=_quantity(c, f, "cpu", "8"),
        memory=_quantity(c, f, "memory", "32Gi"),
        master_labelled=master_labelled,
    )


def _namespaces(c: _Checker, cluster: _Fields) -> tuple[SeedNamespace, ...]:
    unique = _Unique(c, "namespace")
    result = []
    for path, item in cluster.items("namespaces"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("name", "labels", "workloads"))
        name = f.text("name", DNS_LABEL, required=True)
        unique.add(name, f.at("name"))
        labels = f.string_map("labels", LABEL_KEY, LABEL_VALUE)
        workloads = _workloads(c, f)
        if name is not None:
            result.append(SeedNamespace(name, labels, workloads))
    return tuple(result)


def _workloads(c: _Checker, namespace: _Fields) -> tuple[SeedWorkload, ...]:
    unique = _Unique(c, "workload")
    result = []
    for path, item in namespace.items("workloads"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("name", "replicas", "sidecarVersion"), keep_extra=True)
        name = f.text("name", WORKLOAD_NAME, required=True)
        unique.add(name, f.at("name"))
        replicas = f.integer("replicas", 1, 0)
        sidecar = f.text("sidecarVersion", SIDECAR_VERSION)
        if name is not None:
            result.append(SeedWorkload(name, 1 if replicas is None else replicas, sidecar, f.extra))
    return tuple(result)


def _faults(c: _Checker, cluster: _Fields) -> tuple[SeedFault, ...]:
    result = []
    for path, item in cluster.items("faults"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(c, data, path, ("jobType", "times", "reason"), keep_extra=True)
        job_type = _job_type(c, f, "jobType", JOB_TYPES)
        times = f.integer("times", None, 1)
        reason = f.text("reason", required=True)
        if reason is not None and not reason.strip():
            c.fail(f.at("reason"), "must not be empty")
        if job_type is not None and reason is not None:
            result.append(SeedFault(job_type, times, reason, f.extra))
    return tuple(result)


def _job_type(c: _Checker, f: _Fields, key: str, allowed: tuple[str, ...]) -> str | None:
    job_type = f.text(key, JOB_TYPE, required=True)
    if job_type is None:
        return None
    if job_type not in allowed:
        kind = "root job type" if allowed is ROOT_JOB_TYPES else "job type"
        c.fail(f.at(key), f"unknown {kind} {job_type} (known: {', '.join(allowed)})")
        return None
    return job_type


# Meshes -----------------------------------------------------------------------------------------


def _meshes(c: _Checker, account: _Fields, names: _AccountNames, seen: _FileWide) -> tuple[SeedMesh, ...]:
    unique = _Unique(c, "mesh")
    cluster_owner: dict[str, tuple[str, str]] = {}  # cluster id -> (mesh label, path)
    versions = catalogue()
    result = []
    for path, item in account.items("meshes"):
        data = c.mapping(item, path)
        if data is None:
            continue
        f = _Fields(
            c,
            data,
            path,
            ("name", "id", "project", "version", "enterpriseProjectId", "tags", "clusters", "phase", "jobs"),
            keep_extra=True,
        )
        name = f.text("name", MESH_NAME, required=True)
        mesh_id = f.text("id", UUID)
        seen.mesh_ids.add(mesh_id, f.at("id"))
        project = f.text("project", PROJECT_NAME, required=True)
        if project is not None and project not in names.projects:
            c.fail(f.at("project"), f"unknown project {project} (declare it in the account's projects)")
        if name is not None and project is not None:
            unique.add((project, name), f.at("name"), f"{name} in project {project}")
        version = f.text("version", MESH_VERSION, required=True)
        if version is not None and not versions.is_supported(version):
            c.fail(
                f.at("version"), f"unsupported version {version} (supported: {', '.join(versions.versions)})"
            )
        ep = f.text("enterpriseProjectId", EP_ID) or "0"
        if ep not in names.enterprise_projects:
            c.fail(
                f.at("enterpriseProjectId"),
                f"unknown enterprise project {ep} (declare it in the account's enterpriseProjects)",
            )
        tags = tuple(f.string_map("tags", TAG_KEY, TAG_VALUE).items())
        label = f"{project}/{name}"
        clusters: list[str] = []
        cluster_items = f.items("clusters", required=True)
        if f.given("clusters") and isinstance(f.data["clusters"], list) and not cluster_items:
            c.fail(f.at("clusters"), "must name at least one cluster")
        for cluster_path, raw in cluster_items:
            cluster_id = c.text(raw, cluster_path, CLUSTER_ID)
            if cluster_id is None:
                continue
            if cluster_id in clusters:
                c.fail(cluster_path, f"cluster {cluster_id} listed twice")
                continue
            owner = cluster_owner.get(cluster_id)
            if owner is not None:
                c.fail(cluster_path, f"cluster {cluster_id} already belongs to mesh {owner[0]} ({owner[1]})")
                continue
            cluster_owner[cluster_id] = (label, path)
            clusters.append(cluster_id)
        phase = f.choice("phase", MESH_PHASES, "Running")
        jobs = tuple(
            job.job
            for job_path, raw in f.items("jobs")
            if (job := _job_tree(c, raw, job_path, seen)) is not None
        )
        if name is not None and project is not None and version is not None:
            result.append(
                SeedMesh(
                    name=name,
                    id=mesh_id,
                    project=project,
                    version=version,
                    enterprise_project_id=ep,
                    tags=tags,
                    clusters=tuple(clusters),
                    phase=phase,
                    jobs=jobs,
                    extra=f.extra,
                )
            )
    return tuple(result)


# Jobs -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Built:
    job: SeedJob
    node: JobNode | None  # for deriving the parent's phase; None when this subtree has errors


class _Tree:
    def __init__(self, root_path: str) -> None:
        self.root_path = root_path
        self.count = 0
        self.too_big = False


_JOB_FIELDS = (
    "uid",
    "type",
    "target",
    "phase",
    "reason",
    "creationTimestamp",
    "startTime",
    "completionTime",
    "subjobs",
)


def _job_tree(c: _Checker, value: object, path: str, seen: _FileWide) -> _Built | None:
    return _job(c, value, path, 1, _Tree(path), seen)


def _job(c: _Checker, value: object, path: str, depth: int, tree: _Tree, seen: _FileWide) -> _Built | None:
    tree.count += 1
    if tree.count > MAX_JOB_NODES:
        if not tree.too_big:
            tree.too_big = True
            c.fail(tree.root_path, f"a job tree may have at most {MAX_JOB_NODES} nodes")
        return None
    data = c.mapping(value, path)
    if data is None:
        return None
    before = len(c.errors)
    f = _Fields(c, data, path, _JOB_FIELDS)
    uid = f.text("uid", UUID)
    seen.job_uids.add(uid, f.at("uid"))
    job_type = _job_type(c, f, "type", ROOT_JOB_TYPES if depth == 1 else JOB_TYPES)
    target = f.text("target") or ""
    reason = f.text("reason") or ""
    created = f.timestamp("creationTimestamp")

    children: list[_Built | None] = []
    child_items = f.items("subjobs")
    if child_items and depth >= MAX_JOB_DEPTH:
        c.fail(f.at("subjobs"), f"job trees may be at most {MAX_JOB_DEPTH} levels deep")
    else:
        children = [_job(c, raw, child_path, depth + 1, tree, seen) for child_path, raw in child_items]

    phase: str | None
    started: datetime | None = None
    completed: datetime | None = None
    if children:
        phase, reason = _parent_state(c, f, reason, children)
    else:
        phase, started, completed = _leaf_state(c, f, created)
    if job_type is None:
        return None
    job = SeedJob(
        uid=uid,
        type=job_type,
        target=target,
        phase=phase,
        reason=reason,
        creation_timestamp=created,
        start_time=started,
        completion_time=completed,
        subjobs=tuple(child.job for child in children if child is not None),
    )
    node = None
    if len(c.errors) == before and phase is not None:
        state = Phase(phase)
        node = JobNode(
            id="",
            parent_id=None,
            position=0,
            type=job_type,
            target=target,
            phase=state,
            reason=reason,
            created_at=_EPOCH,
            updated_at=_EPOCH,
            started_at=None if state is Phase.INITIALIZING else _EPOCH,
            completed_at=_EPOCH if state.terminal else None,
        )
    return _Built(job, node)


def _leaf_state(
    c: _Checker, f: _Fields, created: datetime | None
) -> tuple[str, datetime | None, datetime | None]:
    phase = f.choice("phase", JOB_PHASES, Phase.INITIALIZING.value)
    known_phase = f.data.get("phase") in (None, *JOB_PHASES)
    started = f.timestamp("startTime")
    completed = f.timestamp("completionTime")
    if started is not None and known_phase and phase == Phase.INITIALIZING:
        c.fail(f.at("startTime"), "not allowed for an Initializing job")
    if completed is not None and known_phase and phase not in (Phase.SUCCESS, Phase.FAILED):
        c.fail(f.at("completionTime"), f"only allowed for Success or Failed jobs (phase is {phase})")
    if created is not None and started is not None and started < created:
        c.fail(f.at("startTime"), "must not be before creationTimestamp")
    if completed is not None:
        earliest = started or created
        if earliest is not None and completed < earliest:
            c.fail(
                f.at("completionTime"),
                f"must not be before {'startTime' if started else 'creationTimestamp'}",
            )
    return phase, started, completed


def _parent_state(
    c: _Checker, f: _Fields, reason: str, children: list[_Built | None]
) -> tuple[str | None, str]:
    for key in ("startTime", "completionTime"):
        if f.given(key):
            c.fail(f.at(key), "is derived from the subjobs; give it on the leaves")
    nodes = [child.node for child in children if child is not None and child.node is not None]
    given = f.data.get("phase")
    if len(nodes) != len(children):  # a child has errors: nothing to derive from
        if given is not None:
            f.choice("phase", JOB_PHASES, Phase.INITIALIZING.value)
        return None, reason
    derived = derive(nodes, _EPOCH)
    if given is not None:
        phase = f.choice("phase", JOB_PHASES, derived.phase.value)
        if phase != derived.phase:
            c.fail(f.at("phase"), f"phase {phase} contradicts its subjobs (derived: {derived.phase.value})")
    if reason and reason != derived.reason:
        c.fail(f.at("reason"), f"reason contradicts its subjobs (derived: {derived.reason!r})")
    return derived.phase.value, derived.reason
