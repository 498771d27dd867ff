"""IAM policies: parsing, validation and evaluation (auth contract §4).

Two document models are supported:

* identity policies, ``"Version": "5.0"``: statements with ``Effect``, ``Action`` | ``NotAction``,
  optional ``Resource`` and optional ``Condition``; attached to users and groups, they apply
  everywhere in the account (``Scope("identity")``);
* role policies, ``"Version": "1.1"``: the same without ``Resource``; granted at a scope (the
  account, one project, one enterprise project) and applying only to requests within it.

Everything that can be decided once is decided at parse time: action patterns are lower-cased,
wildcard patterns are compiled into one regular expression per statement (patterns without
wildcards become a frozenset lookup), condition values are converted to numbers, instants, networks
or compiled expressions. :func:`evaluate` then does no parsing of the policy and allocates almost
nothing; it stops at the first applicable ``Deny``.

Decisions where the contract is silent (all [ours]):

* ``Resource`` patterns are case-sensitive (URNs are made of lower-case ids); ``Action`` patterns
  are not (contract).
* A request without a resource (list, create) is matched only by statements without ``Resource``
  or with a ``Resource`` pattern that matches *every* resource: one made only of ``*`` (``"*"``)
  or whose every ``:``-separated segment is only ``*`` (``"*:*:*:*:*"``). A statement restricted to
  some resources (``"asm:*:*:mesh:*"`` included) does not apply to list/create, as on Huawei Cloud
  ("if the action has no resource type you must specify all resources, ``*``").
* Globs (``*``, ``?``) are matched by a linear-time translation (leftmost atomic search for the
  segments between stars), so no pattern can make matching backtrack exponentially.
  ``StringMatch`` takes real regular expressions (full match); they are bounded in length and come
  from policy authors, who are trusted like administrators.
* A request value given as a list is multi-valued. Without ``ForAnyValue:``/``ForAllValues:`` a
  positive operator holds when *some* request value matches and a negated one when *no* request
  value matches any policy value. An empty list counts as an absent key.
* A request value that cannot be interpreted by the operator (``"abc"`` for ``NumberEquals``, not
  an address for ``IpAddress``, not ``true``/``false`` for ``Bool``) never satisfies the condition,
  negated operators included.
* ``Null`` may carry ``IfExists`` (it changes nothing) but no ``ForAnyValue:``/``ForAllValues:``.
* Operator names and ``Effect`` are case-sensitive as in Huawei's grammar; condition keys are not.
* Dates are RFC 3339 (``Z`` or an offset; without an offset UTC is assumed; a bare date is
  midnight UTC); fractional seconds beyond microseconds are truncated.
* Unknown statement or top-level fields are errors (typos must not silently widen a policy).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Literal, TypeVar

__all__ = [
    "ACCOUNT_SCOPE",
    "IDENTITY_SCOPE",
    "MAX_DOCUMENT_CHARS",
    "MAX_PATTERN_CHARS",
    "MAX_REGEX_CHARS",
    "MAX_STATEMENTS",
    "OPERATORS",
    "AuthzRequest",
    "Condition",
    "Decision",
    "Effect",
    "Grant",
    "Policy",
    "PolicyError",
    "Scope",
    "Statement",
    "could_allow",
    "evaluate",
    "glob_match",
    "parse_identity_policy",
    "parse_identity_policy_json",
    "parse_role_policy",
    "parse_role_policy_json",
]

MAX_STATEMENTS = 100
"""At most this many statements in one document."""
MAX_DOCUMENT_CHARS = 6144
"""At most this many characters of the document as compact JSON (Huawei's limit for custom
policies, counted without any whitespace, which makes it generous)."""
MAX_PATTERN_CHARS = 1024
"""At most this many characters in one Action/Resource pattern or condition value."""
MAX_REGEX_CHARS = 512
"""At most this many characters in one ``StringMatch`` expression."""
_MAX_REQUEST_SCALAR = 256  # longer request values are never numbers, instants or addresses


# --------------------------------------------------------------------------------------------
# Errors and results


class PolicyError(ValueError):
    """An invalid policy document; ``path`` locates the offending element.

    ``path`` is like ``Statement[0].Condition.StringEquals.g:UserName[1]``; it is ``""`` for the
    document as a whole. ``str(error) == f"{path}: {message}"``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def prefixed(self, prefix: str) -> PolicyError:
        """The same error located under ``prefix`` (e.g. a seed-file path)."""
        if not prefix:
            return PolicyError(self.path, self.message)
        if not self.path:
            return PolicyError(prefix, self.message)
        sep = "" if self.path.startswith("[") else "."
        return PolicyError(f"{prefix}{sep}{self.path}", self.message)


class Decision(StrEnum):
    """The outcome of :func:`evaluate`."""

    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


Effect = Decision
"""Alias kept for callers that name the outcome ``Effect``."""


# --------------------------------------------------------------------------------------------
# Pattern matching (globs with * and ?)


def _literal_or_any(segment: str) -> str:
    return "".join("." if c == "?" else re.escape(c) for c in segment)


def _glob_source(pattern: str) -> str:
    """Regex source matching ``pattern`` in linear time when used with ``fullmatch``.

    ``a*b*c`` becomes ``a(?>.*?b).*c``: every segment between two stars is found at its leftmost
    position and never revisited (atomic group), which is complete for globs because a star can
    absorb whatever an earlier choice would have left.
    """
    parts = pattern.split("*")
    if len(parts) == 1:
        return _literal_or_any(pattern)
    head, *middle, tail = parts
    out = [_literal_or_any(head)]
    out.extend(f"(?>.*?{_literal_or_any(m)})" for m in middle if m)
    out.append(".*")
    out.append(_literal_or_any(tail))
    return "".join(out)


def _is_all_stars(pattern: str) -> bool:
    return bool(pattern) and pattern.strip("*") == ""


def _always(_: str | None) -> bool:
    return True


def _never(_: str | None) -> bool:
    return False


def _compile_globs(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate telling whether a string matches any of the glob ``patterns``."""
    if any(_is_all_stars(p) for p in patterns):
        return _always
    exact = frozenset(p for p in patterns if "*" not in p and "?" not in p)
    wild = [p for p in dict.fromkeys(patterns) if "*" in p or "?" in p]
    if not wild:
        return exact.__contains__
    regex = re.compile("|".join(f"(?:{_glob_source(p)})" for p in wild), re.DOTALL)
    fullmatch = regex.fullmatch
    if not exact:
        return lambda s: fullmatch(s) is not None
    return lambda s: s in exact or fullmatch(s) is not None


def glob_match(pattern: str, text: str) -> bool:
    """Whether ``text`` matches the glob ``pattern`` (``*`` any run, ``?`` one character)."""
    return _compile_globs((pattern,))(text)


# --------------------------------------------------------------------------------------------
# Scalars: numbers, instants, booleans, addresses

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,9})?")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?)?"
)
_BOOLS = frozenset({"true", "false"})


def _to_number(text: str) -> Decimal | None:
    if len(text) > _MAX_REQUEST_SCALAR or _NUMBER_RE.fullmatch(text) is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


def _to_instant(text: str) -> datetime | None:
    if len(text) > _MAX_REQUEST_SCALAR:
        return None
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    try:
        tz: timezone = UTC
        if offset and offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                return None
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _to_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if len(text) > _MAX_REQUEST_SCALAR:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --------------------------------------------------------------------------------------------
# Conditions

_STRING, _NUMBER, _DATE, _BOOL, _IP, _NULL = range(6)
# base operator -> (family, negated, comparison)
_OPERATORS: dict[str, tuple[int, bool, str]] = {
    "StringEquals": (_STRING, False, "eq"),
    "StringNotEquals": (_STRING, True, "eq"),
    "StringEqualsIgnoreCase": (_STRING, False, "eqi"),
    "StringNotEqualsIgnoreCase": (_STRING, True, "eqi"),
    "StringLike": (_STRING, False, "like"),
    "StringNotLike": (_STRING, True, "like"),
    "StringStartWith": (_STRING, False, "start"),
    "StringEndWith": (_STRING, False, "end"),
    "StringMatch": (_STRING, False, "regex"),
    "NumberEquals": (_NUMBER, False, "eq"),
    "NumberNotEquals": (_NUMBER, True, "eq"),
    "NumberLessThan": (_NUMBER, False, "lt"),
    "NumberLessThanEquals": (_NUMBER, False, "le"),
    "NumberGreaterThan": (_NUMBER, False, "gt"),
    "NumberGreaterThanEquals": (_NUMBER, False, "ge"),
    "DateEquals": (_DATE, False, "eq"),
    "DateNotEquals": (_DATE, True, "eq"),
    "DateLessThan": (_DATE, False, "lt"),
    "DateLessThanEquals": (_DATE, False, "le"),
    "DateGreaterThan": (_DATE, False, "gt"),
    "DateGreaterThanEquals": (_DATE, False, "ge"),
    "Bool": (_BOOL, False, "eq"),
    "IpAddress": (_IP, False, "in"),
    "NotIpAddress": (_IP, True, "in"),
    "Null": (_NULL, False, "null"),
}
OPERATORS: frozenset[str] = frozenset(_OPERATORS)
"""The base operator names (each also with ``IfExists`` and, except ``Null``, a qualifier)."""

_PLAIN, _ANY, _ALL = 0, 1, 2
_IF_EXISTS = "IfExists"
_Test = Callable[[str], bool | None]
_Ordered = TypeVar("_Ordered", Decimal, datetime)


def _ordered(values: Sequence[_Ordered], comparison: str) -> Callable[[_Ordered], bool]:
    # One policy value suffices (values are OR-ed), so comparing with the extreme one is enough.
    if comparison == "eq":
        members = frozenset(values)
        return members.__contains__
    top, low = max(values), min(values)
    if comparison == "lt":
        return lambda x: x < top
    if comparison == "le":
        return lambda x: x <= top
    if comparison == "gt":
        return lambda x: x > low
    return lambda x: x >= low


def _build_test(operator: str, family: int, comparison: str, values: tuple[str, ...]) -> _Test:
    """The positive per-value test of a condition; ``None`` = value not interpretable."""

    def bad(index: int, message: str) -> PolicyError:
        return PolicyError(f"[{index}]", message)

    if family == _STRING:
        if comparison == "eq":
            members = frozenset(values)
            return members.__contains__
        if comparison == "eqi":
            lowered = frozenset(v.lower() for v in values)
            return lambda v: v.lower() in lowered
        if comparison == "like":
            return _compile_globs(values)
        if comparison == "start":
            prefixes = tuple(values)
            return lambda v: v.startswith(prefixes)
        if comparison == "end":
            suffixes = tuple(values)
            return lambda v: v.endswith(suffixes)
        expressions = []
        for i, v in enumerate(values):
            if len(v) > MAX_REGEX_CHARS:
                raise bad(i, f"regular expression longer than {MAX_REGEX_CHARS} characters")
            try:
                expressions.append(re.compile(v).fullmatch)
            except (re.error, RecursionError, OverflowError) as exc:
                raise bad(i, f"invalid regular expression: {exc}") from None
        return lambda v: any(m(v) is not None for m in expressions)
    if family == _NUMBER:
        numbers: list[Decimal] = []
        for i, v in enumerate(values):
            n = _to_number(v)
            if n is None:
                raise bad(i, f"{operator} needs a number, got {v!r}")
            numbers.append(n)
        compare = _ordered(numbers, comparison)

        def number_test(v: str) -> bool | None:
            n = _to_number(v)
            return None if n is None else compare(n)

        return number_test
    if family == _DATE:
        instants: list[datetime] = []
        for i, v in enumerate(values):
            t = _to_instant(v)
            if t is None:
                raise bad(i, f"{operator} needs an RFC 3339 date-time, got {v!r}")
            instants.append(t)
        compare_instants = _ordered(instants, comparison)

        def date_test(v: str) -> bool | None:
            t = _to_instant(v)
            return None if t is None else compare_instants(t)

        return date_test
    if family == _BOOL:
        for i, v in enumerate(values):
            if v.lower() not in _BOOLS:
                raise bad(i, f'Bool needs "true" or "false", got {v!r}')
        accepted = frozenset(v.lower() for v in values)

        def bool_test(v: str) -> bool | None:
            lowered = v.lower()
            return None if lowered not in _BOOLS else lowered in accepted

        return bool_test
    # _IP
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for i, v in enumerate(values):
        try:
            network = ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise bad(i, f"{operator} needs an IP address or CIDR block, got {v!r}") from None
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        else:
            v6.append(network)
    nets4, nets6 = tuple(v4), tuple(v6)

    def ip_test(v: str) -> bool | None:
        address = _to_address(v)
        if address is None:
            return None
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in n for n in nets4)
        return any(address in n for n in nets6)

    return ip_test


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator -> key -> values`` entry of a statement's ``Condition`` block.

    ``operator`` is as written (``ForAnyValue:StringEqualsIfExists``); ``key`` is stored lower-cased;
    ``values`` are strings. Constructing one validates it (``PolicyError`` with a path relative to
    the ``Condition`` block).
    """

    operator: str
    key: str
    values: tuple[str, ...]
    _test: _Test = field(init=False, compare=False, repr=False)
    _negated: bool = field(init=False, compare=False, repr=False)
    _qualifier: int = field(init=False, compare=False, repr=False)
    _when_absent: bool = field(init=False, compare=False, repr=False)
    _null_when_present: bool | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        operator, raw_key = self.operator, self.key
        path = f"{operator}.{raw_key}"
        qualifier, base = _PLAIN, operator
        if base.startswith("ForAnyValue:"):
            qualifier, base = _ANY, base[len("ForAnyValue:") :]
        elif base.startswith("ForAllValues:"):
            qualifier, base = _ALL, base[len("ForAllValues:") :]
        if_exists = base.endswith(_IF_EXISTS) and base != _IF_EXISTS
        if if_exists:
            base = base[: -len(_IF_EXISTS)]
        spec = _OPERATORS.get(base)
        if spec is None:
            raise PolicyError(operator, f"unknown condition operator {operator!r}")
        family, negated, comparison = spec
        if not raw_key:
            raise PolicyError(path, "condition key must not be empty")
        if len(raw_key) > MAX_PATTERN_CHARS:
            raise PolicyError(path, f"condition key longer than {MAX_PATTERN_CHARS} characters")
        if not self.values:
            raise PolicyError(path, "needs at least one value")
        for i, v in enumerate(self.values):
            if not isinstance(v, str):
                raise PolicyError(f"{path}[{i}]", "must be a string")
            if len(v) > MAX_PATTERN_CHARS:
                raise PolicyError(f"{path}[{i}]", f"longer than {MAX_PATTERN_CHARS} characters")
        set_ = object.__setattr__
        set_(self, "key", raw_key.lower())
        set_(self, "values", tuple(self.values))
        if family == _NULL:
            if qualifier != _PLAIN:
                raise PolicyError(operator, "Null takes no ForAnyValue:/ForAllValues: qualifier")
            for i, v in enumerate(self.values):
                if v.lower() not in _BOOLS:
                    raise PolicyError(f"{path}[{i}]", f'Null needs "true" or "false", got {v!r}')
            lowered = {v.lower() for v in self.values}
            set_(self, "_test", _never)
            set_(self, "_negated", False)
            set_(self, "_qualifier", _PLAIN)
            set_(self, "_when_absent", "true" in lowered)
            set_(self, "_null_when_present", "false" in lowered)
            return
        try:
            test = _build_test(base, family, comparison, self.values)
        except PolicyError as exc:
            raise exc.prefixed(path) from None
        set_(self, "_test", test)
        set_(self, "_negated", negated)
        set_(self, "_qualifier", qualifier)
        set_(self, "_when_absent", if_exists or qualifier == _ALL)
        set_(self, "_null_when_present", None)

    def _value_holds(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        result = self._test(value)
        if result is None:
            return False
        return result is not self._negated

    def holds(self, context: Mapping[str, str | Sequence[str]]) -> bool:
        """Whether the condition holds for ``context`` (whose keys are lower-case)."""
        raw = context.get(self.key)
        if raw is None:
            return self._when_absent
        if isinstance(raw, str):
            if self._null_when_present is not None:
                return self._null_when_present
            return self._value_holds(raw)
        if not isinstance(raw, Sequence):  # a misbehaving caller: no scalar but str is defined
            return False
        if not raw:
            return self._when_absent
        if self._null_when_present is not None:
            return self._null_when_present
        if self._qualifier == _ALL or (self._qualifier == _PLAIN and self._negated):
            return all(self._value_holds(value) for value in raw)
        return any(self._value_holds(value) for value in raw)


# --------------------------------------------------------------------------------------------
# Statements, policies, grants


def _resource_predicate(resources: tuple[str, ...] | None) -> Callable[[str | None], bool]:
    if resources is None:
        return _always
    # A request without a resource (list/create) is covered only by all-resource patterns.
    covers_none = any(all(_is_all_stars(seg) for seg in p.split(":")) for p in resources)
    match = _compile_globs(resources)
    if match is _always:
        return _always

    def resource_applies(resource: str | None) -> bool:
        if resource is None:
            return covers_none
        return match(resource)

    return resource_applies


@dataclass(frozen=True, slots=True)
class Statement:
    """A compiled statement. ``actions`` are the Action (or, if ``not_action``, NotAction) patterns
    as written; ``resources`` is ``None`` when the statement has no ``Resource``."""

    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    not_action: bool = False
    resources: tuple[str, ...] | None = None
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None
    is_deny: bool = field(init=False, compare=False, repr=False)
    _action_applies: Callable[[str], bool] = field(init=False, compare=False, repr=False)
    _resource_applies: Callable[[str | None], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.effect not in ("Allow", "Deny"):
            raise ValueError(f"effect must be 'Allow' or 'Deny', not {self.effect!r}")
        set_ = object.__setattr__
        set_(self, "actions", tuple(self.actions))
        set_(self, "conditions", tuple(self.conditions))
        if self.resources is not None:
            set_(self, "resources", tuple(self.resources))
        set_(self, "is_deny", self.effect == "Deny")
        match = _compile_globs([a.lower() for a in self.actions])
        if self.not_action:
            set_(self, "_action_applies", _never if match is _always else lambda a: not match(a))
        else:
            set_(self, "_action_applies", match)
        set_(self, "_resource_applies", _resource_predicate(self.resources))

    def admits_action(self, action: str) -> bool:
        """Whether Action/NotAction admits ``action`` (case-insensitive)."""
        return self._action_applies(action.lower())

    def to_document(self) -> dict[str, object]:
        doc: dict[str, object] = {}
        if self.sid is not None:
            doc["Sid"] = self.sid
        doc["Effect"] = self.effect
        doc["NotAction" if self.not_action else "Action"] = list(self.actions)
        if self.resources is not None:
            doc["Resource"] = list(self.resources)
        if self.conditions:
            block: dict[str, dict[str, list[str]]] = {}
            for c in self.conditions:
                block.setdefault(c.operator, {}).setdefault(c.key, []).extend(c.values)
            doc["Condition"] = block
        return doc


@dataclass(frozen=True, slots=True)
class Policy:
    version: Literal["5.0", "1.1"]
    statements: tuple[Statement, ...]

    def to_document(self) -> dict[str, object]:
        """A document that parses back to an equal policy."""
        return {"Version": self.version, "Statement": [s.to_document() for s in self.statements]}


ScopeKind = Literal["identity", "account", "project", "enterprise_project"]
_SCOPE_KINDS = ("identity", "account", "project", "enterprise_project")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a grant applies: ``identity`` (identity policies) and ``account`` apply to every
    request of the account; ``project`` to requests whose path carries project id ``value``;
    ``enterprise_project`` to requests on meshes of (or creating meshes in) enterprise project
    ``value``."""

    kind: ScopeKind
    value: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _SCOPE_KINDS:
            raise ValueError(f"unknown scope kind {self.kind!r}")
        if self.kind in ("project", "enterprise_project"):
            if not isinstance(self.value, str) or not self.value:
                raise ValueError(f"a {self.kind} scope needs a value")
        elif self.value is not None:
            object.__setattr__(self, "value", None)  # identity/account scopes carry no value

    def applies(self, project_id: str, enterprise_project_id: str | None) -> bool:
        kind = self.kind
        if kind == "project":
            return self.value == project_id
        if kind == "enterprise_project":
            return enterprise_project_id is not None and self.value == enterprise_project_id
        return True


IDENTITY_SCOPE = Scope("identity")
ACCOUNT_SCOPE = Scope("account")


@dataclass(frozen=True, slots=True)
class Grant:
    policy: Policy
    scope: Scope = IDENTITY_SCOPE


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    action: str
    resource: str | None
    project_id: str
    enterprise_project_id: str | None
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Parsing

_IDENTITY_FIELDS = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource", "Condition"})
_ROLE_FIELDS = frozenset({"Sid", "Effect", "Action", "NotAction", "Condition"})


def _json_size(doc: object) -> int:
    try:
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        raise PolicyError("", "is not a JSON document") from None
    return len(text)


def _scalar_text(value: object, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, datetime):  # YAML turns unquoted timestamps into datetimes
        instant = value if value.tzinfo else value.replace(tzinfo=UTC)
        return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise PolicyError(path, "must be a string, number or boolean")


def _patterns(value: object, path: str, *, resource: bool) -> tuple[str, ...]:
    items: Sequence[object]
    if isinstance(value, str):
        items = (value,)
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise PolicyError(path, "must be a string or a list of strings")
    if not items:
        raise PolicyError(path, "must not be empty")
    out: list[str] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, str):
            raise PolicyError(item_path, "must be a string")
        if not item:
            raise PolicyError(item_path, "must not be empty")
        if len(item) > MAX_PATTERN_CHARS:
            raise PolicyError(item_path, f"longer than {MAX_PATTERN_CHARS} characters")
        if resource and not _is_all_stars(item):
            segments = item.split(":", 4)
            if len(segments) != 5 or not all(segments):
                raise PolicyError(
                    item_path, 'must be "*" or a URN "<service>:<region>:<account-id>:<type>:<id>"'
                )
        out.append(item)
    return tuple(out)


def _conditions(value: object, path: str) -> tuple[Condition, ...]:
    if not isinstance(value, Mapping):
        raise PolicyError(path, "must be an object of operator -> {key -> values}")
    out: list[Condition] = []
    for operator, block in value.items():
        if not isinstance(operator, str):
            raise PolicyError(path, f"operator {operator!r} must be a string")
        op_path = f"{path}.{operator}"
        if not isinstance(block, Mapping):
            raise PolicyError(op_path, "must be an object of key -> values")
        seen: set[str] = set()
        for key, raw_values in block.items():
            if not isinstance(key, str):
                raise PolicyError(op_path, f"condition key {key!r} must be a string")
            key_path = f"{op_path}.{key}"
            if key.lower() in seen:
                raise PolicyError(key_path, "duplicate condition key (keys are case-insensitive)")
            seen.add(key.lower())
            values: list[str]
            if isinstance(raw_values, list | tuple):
                values = [_scalar_text(v, f"{key_path}[{i}]") for i, v in enumerate(raw_values)]
            else:
                values = [_scalar_text(raw_values, key_path)]
            try:
                out.append(Condition(operator, key, tuple(values)))
            except PolicyError as exc:
                raise exc.prefixed(path) from None
    return tuple(out)


def _statement(raw: object, path: str, version: str) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(path, "must be an object")
    allowed = _IDENTITY_FIELDS if version == "5.0" else _ROLE_FIELDS
    for field_name in raw:
        if field_name not in allowed:
            if field_name == "Resource":
                raise PolicyError(f"{path}.Resource", "not allowed in a Version 1.1 (role) policy")
            raise PolicyError(f"{path}.{field_name}", "unknown statement field")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError(f"{path}.Sid", "must be a string")
    effect = raw.get("Effect")
    if effect is None:
        raise PolicyError(f"{path}.Effect", "required")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{path}.Effect", 'must be "Allow" or "Deny"')
    has_action, has_not_action = "Action" in raw, "NotAction" in raw
    if has_action and has_not_action:
        raise PolicyError(f"{path}.NotAction", "a statement takes Action or NotAction, not both")
    if not has_action and not has_not_action:
        raise PolicyError(f"{path}.Action", "required (or NotAction)")
    name = "Action" if has_action else "NotAction"
    actions = _patterns(raw[name], f"{path}.{name}", resource=False)
    resources = None
    if "Resource" in raw:
        resources = _patterns(raw["Resource"], f"{path}.Resource", resource=True)
    conditions: tuple[Condition, ...] = ()
    if "Condition" in raw:
        conditions = _conditions(raw["Condition"], f"{path}.Condition")
    return Statement(
        effect="Allow" if effect == "Allow" else "Deny",
        actions=actions,
        not_action=has_not_action,
        resources=resources,
        conditions=conditions,
        sid=sid,
    )


def _parse(doc: object, version: Literal["5.0", "1.1"]) -> Policy:
    if not isinstance(doc, Mapping):
        raise PolicyError("", "a policy must be a JSON object")
    size = _json_size(doc)
    if size > MAX_DOCUMENT_CHARS:
        raise PolicyError("", f"policy is {size} characters of JSON, more than {MAX_DOCUMENT_CHARS}")
    for name in doc:
        if name not in ("Version", "Statement"):
            raise PolicyError(str(name), "unknown policy field")
    if "Version" not in doc:
        raise PolicyError("Version", "required")
    given = doc["Version"]
    if isinstance(given, float) and not isinstance(given, bool):
        given = str(given)  # YAML: Version: 5.0 unquoted
    if given != version:
        kind = "an identity" if version == "5.0" else "a role"
        raise PolicyError("Version", f'must be "{version}" for {kind} policy')
    if "Statement" not in doc:
        raise PolicyError("Statement", "required")
    raw_statements = doc["Statement"]
    if not isinstance(raw_statements, list | tuple):
        raise PolicyError("Statement", "must be a list of statements")
    if not raw_statements:
        raise PolicyError("Statement", "must not be empty")
    if len(raw_statements) > MAX_STATEMENTS:
        raise PolicyError("Statement", f"more than {MAX_STATEMENTS} statements")
    statements = tuple(_statement(raw, f"Statement[{i}]", version) for i, raw in enumerate(raw_statements))
    return Policy(version=version, statements=statements)


def parse_identity_policy(doc: object) -> Policy:
    """Validate and compile an identity policy (``Version`` ``"5.0"``); raises PolicyError."""
    return _parse(doc, "5.0")


def parse_role_policy(doc: object) -> Policy:
    """Validate and compile a role policy (``Version`` ``"1.1"``, no Resource); raises PolicyError."""
    return _parse(doc, "1.1")


def _loads(text: str) -> object:
    if len(text) > 8 * MAX_DOCUMENT_CHARS:
        raise PolicyError("", f"policy is more than {8 * MAX_DOCUMENT_CHARS} characters of JSON")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PolicyError("", f"not valid JSON: {exc}") from None


@lru_cache(maxsize=4096)
def parse_identity_policy_json(text: str) -> Policy:
    """:func:`parse_identity_policy` of a JSON text, memoised (policies are immutable)."""
    return parse_identity_policy(_loads(text))


@lru_cache(maxsize=4096)
def parse_role_policy_json(text: str) -> Policy:
    """:func:`parse_role_policy` of a JSON text, memoised (policies are immutable)."""
    return parse_role_policy(_loads(text))


# --------------------------------------------------------------------------------------------
# Evaluation


def _normalise_context(
    context: Mapping[str, str | Sequence[str]],
) -> Mapping[str, str | Sequence[str]]:
    for key in context:
        if key != key.lower():
            return {k.lower(): v for k, v in context.items()}
    return context


def evaluate(grants: Sequence[Grant], request: AuthzRequest) -> Decision:
    """The IAM decision for ``request`` under ``grants`` (auth contract §4); root is the caller's.

    Any applicable Deny -> EXPLICIT_DENY; else any applicable Allow -> ALLOW; else IMPLICIT_DENY.
    """
    action = request.action.lower()
    resource = request.resource
    project_id = request.project_id
    enterprise_project_id = request.enterprise_project_id
    context: Mapping[str, str | Sequence[str]] | None = None
    allowed = False
    for grant in grants:
        scope = grant.scope
        kind = scope.kind
        if kind == "project":
            if scope.value != project_id:
                continue
        elif kind == "enterprise_project" and (
            enterprise_project_id is None or scope.value != enterprise_project_id
        ):
            continue
        for statement in grant.policy.statements:
            if allowed and not statement.is_deny:
                continue  # only a Deny can still change the outcome
            if not statement._action_applies(action):
                continue
            if not statement._resource_applies(resource):
                continue
            conditions = statement.conditions
            if conditions:
                if context is None:
                    context = _normalise_context(request.context)
                for condition in conditions:
                    if not condition.holds(context):
                        break
                else:
                    if statement.is_deny:
                        return Decision.EXPLICIT_DENY
                    allowed = True
                continue
            if statement.is_deny:
                return Decision.EXPLICIT_DENY
            allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def could_allow(grants: Sequence[Grant], action: str, project_id: str) -> bool:
    """Whether some Allow statement admits ``action`` in a grant that can apply in ``project_id``.

    Resource and Condition are ignored, so ``False`` means that :func:`evaluate` cannot answer
    ALLOW for this action in this project, whatever the resource, enterprise project and context:
    the caller may then answer 403 without revealing whether the target exists.
    """
    lowered = action.lower()
    for grant in grants:
        scope = grant.scope
        if scope.kind == "project" and scope.value != project_id:
            continue
        for statement in grant.policy.statements:
            if not statement.is_deny and statement._action_applies(lowered):
                return True
    return False
