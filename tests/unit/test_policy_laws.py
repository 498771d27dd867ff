"""Property tests: the laws of IAM evaluation, checked on random policies from small alphabets."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from meshup.iam.policy import (
    AuthzRequest,
    Condition,
    Decision,
    Grant,
    Policy,
    Scope,
    Statement,
    could_allow,
    evaluate,
    glob_match,
    parse_identity_policy,
    parse_role_policy,
)

laws = settings(max_examples=100, deadline=None, database=None)
heavy = settings(laws, max_examples=60)  # random grant sets: keep the whole file well under 10 s

PROJECTS = ["p1", "p2"]
EPS = ["0", "ep1"]
ACTIONS = ["asm:mesh:get", "asm:mesh:list", "asm:mesh:upgrade", "asm:mesh:getUpgradeJob", "asm:mesh:create"]
ACTION_PATTERNS = [
    *ACTIONS,
    "*",
    "asm:*",
    "asm:mesh:*",
    "asm:mesh:get*",
    "asm:mesh:ge?",
    "ASM:MESH:GET",
    "asm:mesh:?ist",
    "*:upgrade",
    "ecs:*",
]
RESOURCES = ["asm:r1:a1:mesh:m1", "asm:r1:a1:mesh:m2", "asm:r2:a1:mesh:m1"]
RESOURCE_PATTERNS = [
    *RESOURCES,
    "*",
    "asm:*:*:mesh:*",
    "asm:r1:*:mesh:*",
    "asm:r?:a1:mesh:m1",
    "*:*:*:*:*",
    "asm:*:*:mesh:m2",
]
STRING_KEYS = ["g:UserName", "g:ResourceTag/team", "g:TagKeys"]
STRING_POLICY_VALUES = ["alice", "bob", "team", "payments", "al*", "b?b", "*"]
CONTEXT_VALUES = ["alice", "bob", "team", "payments", "Alice", "b", "1", "2", "x", "1.5"]
STRING_OPERATORS = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "StringStartWith",
    "StringEndWith",
]
NUMBER_OPERATORS = [
    "NumberEquals",
    "NumberNotEquals",
    "NumberLessThan",
    "NumberLessThanEquals",
    "NumberGreaterThan",
    "NumberGreaterThanEquals",
]
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumberNotEquals"}

SCOPES = [
    Scope("account"),
    *(Scope("project", p) for p in PROJECTS),
    *(Scope("enterprise_project", e) for e in EPS),
]

# -------------------------------------------------------------------------------------------
# Strategies


def cased(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from([key, key.upper(), key.lower()])


@st.composite
def condition_entries(draw: st.DrawFn) -> tuple[str, str, list[object]]:
    family = draw(st.sampled_from(["string", "string", "number", "null"]))
    values: list[object]
    if family == "string":
        base = draw(st.sampled_from(STRING_OPERATORS))
        key = draw(st.sampled_from(STRING_KEYS))
        values = list(draw(st.lists(st.sampled_from(STRING_POLICY_VALUES), min_size=1, max_size=3)))
    elif family == "number":
        base = draw(st.sampled_from(NUMBER_OPERATORS))
        key = "g:Count"
        values = list(draw(st.lists(st.sampled_from(["1", "2", 2, "1.5"]), min_size=1, max_size=2)))
    else:
        base = "Null"
        key = draw(st.sampled_from([*STRING_KEYS, "g:Count"]))
        values = list(draw(st.lists(st.sampled_from(["true", "false", True]), min_size=1, max_size=2)))
    qualifier = "" if base == "Null" else draw(st.sampled_from(["", "", "ForAnyValue:", "ForAllValues:"]))
    suffix = draw(st.sampled_from(["", "", "IfExists"]))
    return qualifier + base + suffix, draw(cased(key)), values


@st.composite
def condition_blocks(draw: st.DrawFn) -> dict[str, dict[str, list[object]]]:
    block: dict[str, dict[str, list[object]]] = {}
    for operator, key, values in draw(st.lists(condition_entries(), max_size=2)):
        keys = block.setdefault(operator, {})
        if key.lower() not in {k.lower() for k in keys}:  # keys are case-insensitive: no duplicates
            keys[key] = values
    return block


@st.composite
def statement_docs(draw: st.DrawFn, *, with_resource: bool) -> dict[str, object]:
    doc: dict[str, object] = {"Effect": draw(st.sampled_from(["Allow", "Allow", "Deny"]))}
    name = "NotAction" if draw(st.integers(0, 4)) == 0 else "Action"
    doc[name] = draw(st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=3))
    if with_resource and draw(st.booleans()):
        doc["Resource"] = draw(st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=2))
    block = draw(condition_blocks())
    if block:
        doc["Condition"] = block
    return doc


@st.composite
def grants(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 4) -> list[Grant]:
    out: list[Grant] = []
    for _ in range(draw(st.integers(min_size, max_size))):
        is_identity = draw(st.booleans())
        statements = draw(st.lists(statement_docs(with_resource=is_identity), min_size=1, max_size=3))
        if is_identity:
            out.append(
                Grant(parse_identity_policy({"Version": "5.0", "Statement": statements}), Scope("identity"))
            )
        else:
            policy = parse_role_policy({"Version": "1.1", "Statement": statements})
            out.append(Grant(policy, draw(st.sampled_from(SCOPES))))
    return out


context_values: st.SearchStrategy[str | list[str]] = st.one_of(
    st.sampled_from(CONTEXT_VALUES), st.lists(st.sampled_from(CONTEXT_VALUES), max_size=3)
)


@st.composite
def requests(draw: st.DrawFn) -> AuthzRequest:
    action = draw(st.sampled_from(ACTIONS))
    if draw(st.booleans()):
        action = action.upper()
    context: dict[str, str | Sequence[str]] = draw(
        st.dictionaries(
            st.sampled_from(["g:username", "g:resourcetag/team", "g:tagkeys", "g:count"]),
            context_values,
            max_size=4,
        )
    )
    return AuthzRequest(
        action=action,
        resource=draw(st.sampled_from([*RESOURCES, None])),
        project_id=draw(st.sampled_from(PROJECTS)),
        enterprise_project_id=draw(st.sampled_from([*EPS, None])),
        context=context,
    )


def with_statement(grant: Grant, statement: Statement, position: int) -> Grant:
    statements = list(grant.policy.statements)
    statements.insert(position % (len(statements) + 1), statement)
    return Grant(Policy(grant.policy.version, tuple(statements)), grant.scope)


def applies(scope: Scope, request: AuthzRequest) -> bool:
    return scope.applies(request.project_id, request.enterprise_project_id)


# -------------------------------------------------------------------------------------------
# Reference implementations (slow and obvious)


@cache
def reference_glob(pattern: str, text: str) -> bool:
    if not pattern:
        return not text
    if pattern[0] == "*":
        return reference_glob(pattern[1:], text) or (bool(text) and reference_glob(pattern, text[1:]))
    return bool(text) and pattern[0] in ("?", text[0]) and reference_glob(pattern[1:], text[1:])


def reference_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def reference_match(base: str, value: str, policy_value: str) -> bool | None:
    if base.startswith("Number"):
        x, p = reference_number(value), reference_number(policy_value)
        assert p is not None
        if x is None:
            return None
        return {
            "NumberEquals": x == p,
            "NumberNotEquals": x == p,
            "NumberLessThan": x < p,
            "NumberLessThanEquals": x <= p,
            "NumberGreaterThan": x > p,
            "NumberGreaterThanEquals": x >= p,
        }[base]
    if base in ("StringEquals", "StringNotEquals"):
        return value == policy_value
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return value.lower() == policy_value.lower()
    if base in ("StringLike", "StringNotLike"):
        return reference_glob(policy_value, value)
    if base == "StringStartWith":
        return value.startswith(policy_value)
    assert base == "StringEndWith"
    return value.endswith(policy_value)


def reference_holds(operator: str, key: str, values: Sequence[str], context: Mapping[str, object]) -> bool:
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    raw = context.get(key.lower())
    present = raw is not None and (isinstance(raw, str) or len(raw) > 0)  # type: ignore[arg-type]
    lowered = [v.lower() for v in values]
    if base == "Null":
        return "false" in lowered if present else "true" in lowered
    if not present:
        return if_exists or qualifier == "ForAllValues"
    assert isinstance(raw, str | list)
    request_values = [raw] if isinstance(raw, str) else raw
    negated = base in NEGATED

    def pred(v: str) -> bool:
        matches = [reference_match(base, v, p) for p in values]
        if None in matches:
            return False
        return not any(matches) if negated else any(matches)

    if qualifier == "ForAllValues" or (not qualifier and negated):
        return all(pred(v) for v in request_values)
    return any(pred(v) for v in request_values)


def reference_evaluate(grant_list: Sequence[Grant], request: AuthzRequest) -> Decision:
    effects = []
    action = request.action.lower()
    for grant in grant_list:
        if not applies(grant.scope, request):
            continue
        for s in grant.policy.statements:
            admitted = any(reference_glob(p.lower(), action) for p in s.actions)
            if admitted == s.not_action:
                continue
            if s.resources is not None:
                if request.resource is None:
                    if not any(all(seg and set(seg) == {"*"} for seg in p.split(":")) for p in s.resources):
                        continue
                elif not any(reference_glob(p, request.resource) for p in s.resources):
                    continue
            if all(c.holds(request.context) for c in s.conditions):
                effects.append(s.effect)
    if "Deny" in effects:
        return Decision.EXPLICIT_DENY
    return Decision.ALLOW if "Allow" in effects else Decision.IMPLICIT_DENY


# -------------------------------------------------------------------------------------------
# Laws


@heavy
@given(grants(), requests(), st.integers(0, 10), st.booleans())
def test_explicit_deny_always_wins(
    grant_list: list[Grant], request: AuthzRequest, position: int, into_existing: bool
) -> None:
    deny = Statement(effect="Deny", actions=(request.action.swapcase(),))
    candidates = [i for i, g in enumerate(grant_list) if applies(g.scope, request)]
    if into_existing and candidates:
        i = candidates[position % len(candidates)]
        changed = list(grant_list)
        changed[i] = with_statement(grant_list[i], deny, position)
    else:
        changed = list(grant_list)
        changed.insert(position % (len(grant_list) + 1), Grant(Policy("5.0", (deny,)), Scope("identity")))
    assert evaluate(changed, request) == Decision.EXPLICIT_DENY


@laws
@given(requests(), st.sampled_from([Scope("identity"), *SCOPES]))
def test_no_statements_is_implicit_deny(request: AuthzRequest, scope: Scope) -> None:
    assert evaluate([], request) == Decision.IMPLICIT_DENY
    assert evaluate([Grant(Policy("1.1", ()), scope)], request) == Decision.IMPLICIT_DENY


@heavy
@given(
    grants(),
    requests(),
    statement_docs(with_resource=True),
    st.integers(0, 10),
    st.sampled_from([Scope("identity"), *SCOPES]),
)
def test_adding_an_allow_is_monotonic(
    grant_list: list[Grant], request: AuthzRequest, doc: dict[str, object], position: int, scope: Scope
) -> None:
    doc = {**doc, "Effect": "Allow"}
    if scope.kind != "identity":
        doc.pop("Resource", None)
    allow = parse_identity_policy({"Version": "5.0", "Statement": [doc]}).statements[0]
    before = evaluate(grant_list, request)
    changed = list(grant_list)
    if grant_list and position % 2:
        i = position % len(grant_list)
        changed[i] = with_statement(grant_list[i], allow, position)
    else:
        changed.insert(position % (len(grant_list) + 1), Grant(Policy("5.0", (allow,)), scope))
    after = evaluate(changed, request)
    if before == Decision.ALLOW:
        assert after == Decision.ALLOW
    if before == Decision.EXPLICIT_DENY:
        assert after == Decision.EXPLICIT_DENY


@heavy
@given(
    grants(), requests(), st.lists(statement_docs(with_resource=False), min_size=1, max_size=3), st.booleans()
)
def test_a_grant_whose_scope_does_not_apply_changes_nothing(
    grant_list: list[Grant], request: AuthzRequest, docs: list[dict[str, object]], by_project: bool
) -> None:
    policy = parse_role_policy({"Version": "1.1", "Statement": docs})
    if by_project:
        scope = Scope("project", "p-" + request.project_id)
    else:
        scope = Scope("enterprise_project", "ep-" + (request.enterprise_project_id or "none"))
    assert not applies(scope, request)
    assert evaluate([*grant_list, Grant(policy, scope)], request) == evaluate(grant_list, request)
    assert evaluate([Grant(policy, scope), *grant_list], request) == evaluate(grant_list, request)


@heavy
@given(grants(), requests(), st.randoms(use_true_random=False))
def test_decision_laws(grant_list: list[Grant], request: AuthzRequest, rnd: random.Random) -> None:
    decision = evaluate(grant_list, request)
    # the optimised evaluation agrees with an obvious one
    assert decision == reference_evaluate(grant_list, request)
    # soundness of the early 403
    if decision == Decision.ALLOW:
        assert could_allow(grant_list, request.action, request.project_id)
    # independent of the order of grants and statements; duplicates change nothing
    shuffled = []
    for g in grant_list:
        statements = list(g.policy.statements)
        rnd.shuffle(statements)
        shuffled.append(Grant(Policy(g.policy.version, tuple(statements)), g.scope))
    rnd.shuffle(shuffled)
    assert evaluate(shuffled, request) == decision
    assert evaluate(grant_list + grant_list, request) == decision
    # actions are case-insensitive
    swapped = AuthzRequest(
        request.action.swapcase(),
        request.resource,
        request.project_id,
        request.enterprise_project_id,
        request.context,
    )
    assert evaluate(grant_list, swapped) == decision
    # only Deny statements never allow
    denies = [
        Grant(Policy(g.policy.version, tuple(s for s in g.policy.statements if s.is_deny)), g.scope)
        for g in grant_list
    ]
    assert evaluate(denies, request) != Decision.ALLOW
    # documents round-trip
    for g in grant_list:
        parse = parse_identity_policy if g.policy.version == "5.0" else parse_role_policy
        assert parse(g.policy.to_document()) == g.policy


@heavy
@given(grants(min_size=1), st.sampled_from(ACTIONS), st.sampled_from(PROJECTS), st.data())
def test_could_allow_false_means_never_allow(
    grant_list: list[Grant], action: str, project_id: str, data: st.DataObject
) -> None:
    if could_allow(grant_list, action, project_id):
        return
    for _ in range(4):  # any resource, enterprise project and context
        r = data.draw(requests())
        req = AuthzRequest(action, r.resource, project_id, r.enterprise_project_id, r.context)
        assert evaluate(grant_list, req) != Decision.ALLOW


@laws
@given(condition_entries(), st.dictionaries(st.sampled_from(["g:username", "g:count"]), context_values))
def test_conditions_agree_with_the_reference(
    entry: tuple[str, str, list[object]], context: dict[str, str | Sequence[str]]
) -> None:
    operator, key, raw_values = entry
    values = [v if isinstance(v, str) else str(v).lower() for v in raw_values]
    context = {**context, "g:resourcetag/team": context.get("g:username", []), "g:tagkeys": ["team", "b"]}
    condition = Condition(operator, key, tuple(values))
    assert condition.holds(context) == reference_holds(operator, key, values, context)


@laws
@given(
    st.sampled_from(["StringEquals", "StringEqualsIgnoreCase", "StringLike", "NumberEquals"]),
    st.sampled_from(["", "IfExists"]),
    st.lists(st.sampled_from(["1", "2", "al*", "alice"]), min_size=1, max_size=3),
    st.sampled_from(["1", "2", "alice", "Alice", "bob"]),
)
def test_negated_operator_is_the_complement_for_present_values(
    base: str, suffix: str, values: list[str], value: str
) -> None:
    if base == "NumberEquals":
        values, negation = ["1", "2"], "NumberNotEquals"
        value = value if value in ("1", "2") else "3"
    else:
        negation = base.replace("String", "StringNot", 1)
    context = {"g:k": value}
    positive = Condition(base + suffix, "g:K", tuple(values)).holds(context)
    negative = Condition(negation + suffix, "g:K", tuple(values)).holds(context)
    assert positive != negative


@laws
@given(st.text("ab*?", max_size=8), st.text("ab", max_size=10))
def test_glob_agrees_with_the_reference(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == reference_glob(pattern, text)
