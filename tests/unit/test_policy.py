"""Unit tests of the IAM policy domain: parsing, every operator, scopes, decisions."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from typing import cast

import pytest

from meshup.iam import actions
from meshup.iam.policy import (
    MAX_STATEMENTS,
    AuthzRequest,
    Condition,
    Decision,
    Grant,
    Policy,
    PolicyError,
    Scope,
    Statement,
    could_allow,
    evaluate,
    glob_match,
    parse_identity_policy,
    parse_identity_policy_json,
    parse_role_policy,
    parse_role_policy_json,
)

MESH = "asm:cn-north-4:5f0d9c3a6b1e4c2d8e7f60718293a4b5:mesh:9b2f4c1e-0000-4000-8000-000000000001"
PROJECT = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "fedcba9876543210fedcba9876543210"
EP = "7c1e0b2a-0000-4000-8000-000000000001"


def identity(*statements: Mapping[str, object]) -> Policy:
    return parse_identity_policy({"Version": "5.0", "Statement": list(statements)})


def role(*statements: Mapping[str, object]) -> Policy:
    return parse_role_policy({"Version": "1.1", "Statement": list(statements)})


def request(
    action: str = "asm:mesh:getUpgradeJob",
    resource: str | None = MESH,
    *,
    project_id: str = PROJECT,
    ep: str | None = "0",
    **context: str | Sequence[str],
) -> AuthzRequest:
    return AuthzRequest(action, resource, project_id, ep, context)


def decide(policy: Policy, req: AuthzRequest, scope: Scope | None = None) -> Decision:
    return evaluate([Grant(policy, scope or Scope("identity"))], req)


def cond(operator: str, key: str, *values: object) -> Policy:
    """An identity policy allowing everything under one condition."""
    return identity({"Effect": "Allow", "Action": ["*"], "Condition": {operator: {key: list(values)}}})


def holds(operator: str, key: str, values: Sequence[object], context: Mapping[str, object]) -> bool:
    ctx = cast(dict[str, str | Sequence[str]], {k.lower(): v for k, v in context.items()})
    return decide(cond(operator, key, *values), AuthzRequest("asm:mesh:get", MESH, PROJECT, "0", ctx)) == (
        Decision.ALLOW
    )


def parse_error(doc: object, *, role_policy: bool = False) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        (parse_role_policy if role_policy else parse_identity_policy)(doc)
    return info.value


# -------------------------------------------------------------------------------------------
# Actions and resources


class TestActionsAndResources:
    def test_exact_action_is_case_insensitive(self) -> None:
        p = identity({"Effect": "Allow", "Action": ["ASM:Mesh:GetUpgradeJob"]})
        assert decide(p, request("asm:mesh:getupgradejob")) == Decision.ALLOW
        assert decide(p, request("asm:mesh:getUpgradeJob")) == Decision.ALLOW
        assert decide(p, request("asm:mesh:get")) == Decision.IMPLICIT_DENY

    @pytest.mark.parametrize(
        ("pattern", "action", "expected"),
        [
            ("*", "asm:mesh:get", True),
            ("asm:*", "asm:mesh:get", True),
            ("asm:mesh:*", "asm:mesh:getUpgradeJob", True),
            ("asm:mesh:get*", "asm:mesh:getUpgradeJob", True),
            ("asm:mesh:get*", "asm:mesh:get", True),
            ("asm:mesh:ge?", "asm:mesh:get", True),
            ("asm:mesh:ge?", "asm:mesh:getUpgradeJob", False),
            ("asm:mesh:?", "asm:mesh:", False),
            ("ASM:*:LIST", "asm:mesh:list", True),
            ("*:*:upgrade", "asm:mesh:upgrade", True),
            ("asm:mesh:*job", "asm:mesh:getUpgradeJob", True),
            ("ecs:*", "asm:mesh:get", False),
            ("asm:mesh.get", "asm:mesh:get", False),  # '.' is literal, not a regex
        ],
    )
    def test_action_wildcards(self, pattern: str, action: str, expected: bool) -> None:
        p = identity({"Effect": "Allow", "Action": [pattern]})
        assert (decide(p, request(action)) == Decision.ALLOW) is expected

    def test_not_action(self) -> None:
        p = identity({"Effect": "Allow", "NotAction": ["asm:mesh:delete", "asm:mesh:up*"]})
        assert decide(p, request("asm:mesh:get")) == Decision.ALLOW
        assert decide(p, request("asm:mesh:DELETE")) == Decision.IMPLICIT_DENY
        assert decide(p, request("asm:mesh:upgrade")) == Decision.IMPLICIT_DENY
        deny = identity({"Effect": "Deny", "NotAction": ["asm:mesh:get"]}, {"Effect": "Allow", "Action": "*"})
        assert decide(deny, request("asm:mesh:get")) == Decision.ALLOW
        assert decide(deny, request("asm:mesh:list", None)) == Decision.EXPLICIT_DENY

    def test_not_action_star_admits_nothing(self) -> None:
        p = identity({"Effect": "Allow", "NotAction": ["*"]})
        assert decide(p, request()) == Decision.IMPLICIT_DENY
        assert not could_allow([Grant(p, Scope("identity"))], "asm:mesh:get", PROJECT)

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("*", True),
            ("asm:*:*:mesh:*", True),
            ("asm:cn-north-4:*:mesh:9b2f4c1e-*", True),
            ("asm:cn-north-?:*:mesh:*", True),
            ("asm:cn-south-1:*:mesh:*", False),
            ("asm:*:*:mesh:other", False),
            ("ASM:*:*:MESH:*", False),  # resources are case-sensitive
        ],
    )
    def test_resource_patterns(self, pattern: str, expected: bool) -> None:
        p = identity({"Effect": "Allow", "Action": ["asm:mesh:get"], "Resource": [pattern]})
        assert (decide(p, request("asm:mesh:get")) == Decision.ALLOW) is expected

    def test_absent_resource_means_all(self) -> None:
        p = identity({"Effect": "Allow", "Action": ["asm:mesh:*"]})
        assert decide(p, request("asm:mesh:get")) == Decision.ALLOW
        assert decide(p, request("asm:mesh:list", None)) == Decision.ALLOW

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("*", True),
            ("**", True),
            ("*:*:*:*:*", True),
            ("asm:*:*:mesh:*", False),
            ("asm:cn-north-4:*:mesh:m1", False),
        ],
    )
    def test_resourceless_requests_need_all_resource_patterns(self, pattern: str, expected: bool) -> None:
        p = identity({"Effect": "Allow", "Action": ["asm:mesh:*"], "Resource": [pattern]})
        assert (decide(p, request("asm:mesh:list", None)) == Decision.ALLOW) is expected
        assert (decide(p, request("asm:mesh:create", None)) == Decision.ALLOW) is expected

    def test_several_resources_or(self) -> None:
        p = identity(
            {"Effect": "Allow", "Action": "asm:mesh:*", "Resource": ["asm:*:*:mesh:nope", "asm:*:*:mesh:9b*"]}
        )
        assert decide(p, request("asm:mesh:get")) == Decision.ALLOW

    def test_glob_match_helper(self) -> None:
        assert glob_match("a*b?c", "axxbyc")
        assert not glob_match("a*b?c", "axxbc")
        assert glob_match("*ab*b", "abb")
        assert not glob_match("*ab*b", "ab")
        assert glob_match("a\nb*", "a\nbcd")

    def test_glob_is_linear(self) -> None:
        p = identity(
            {
                "Effect": "Allow",
                "Action": "*",
                "Condition": {"StringLike": {"g:username": ["*a*a*a*a*a*a*a*a*a*a*b"]}},
            }
        )
        assert (
            decide(p, request(**{"g:username": "a" * 1000})) == Decision.IMPLICIT_DENY
        )  # would hang if naive


# -------------------------------------------------------------------------------------------
# Conditions


class TestStringOperators:
    def test_string_equals_values_or_ed(self) -> None:
        assert holds("StringEquals", "g:UserName", ["alice", "bob"], {"g:username": "bob"})
        assert not holds("StringEquals", "g:UserName", ["alice", "bob"], {"g:username": "Bob"})
        assert not holds("StringEquals", "g:UserName", ["alice"], {})

    def test_keys_are_case_insensitive(self) -> None:
        assert holds("StringEquals", "G:USERNAME", ["alice"], {"g:username": "alice"})
        assert holds("StringEquals", "g:ResourceTag/Team", ["payments"], {"g:resourcetag/team": "payments"})
        # a caller that forgets to lower-case context keys still works
        p = cond("StringEquals", "g:UserName", "alice")
        req = AuthzRequest("asm:mesh:get", MESH, PROJECT, "0", {"g:UserName": "alice"})
        assert decide(p, req) == Decision.ALLOW

    def test_string_not_equals_must_match_none(self) -> None:
        assert holds("StringNotEquals", "g:UserName", ["alice", "bob"], {"g:username": "carol"})
        assert not holds("StringNotEquals", "g:UserName", ["alice", "bob"], {"g:username": "bob"})
        assert not holds("StringNotEquals", "g:UserName", ["alice", "bob"], {"g:username": "alice"})
        assert not holds("StringNotEquals", "g:UserName", ["alice"], {})  # missing key -> false

    def test_ignore_case(self) -> None:
        assert holds("StringEqualsIgnoreCase", "g:UserName", ["ALICE"], {"g:username": "alice"})
        assert not holds("StringEqualsIgnoreCase", "g:UserName", ["ALICE"], {"g:username": "bob"})
        assert holds("StringNotEqualsIgnoreCase", "g:UserName", ["ALICE", "x"], {"g:username": "bob"})
        assert not holds("StringNotEqualsIgnoreCase", "g:UserName", ["ALICE", "x"], {"g:username": "Alice"})

    def test_like(self) -> None:
        assert holds("StringLike", "g:UserName", ["al*", "zz"], {"g:username": "alice"})
        assert holds("StringLike", "g:UserName", ["b?b"], {"g:username": "bob"})
        assert not holds("StringLike", "g:UserName", ["b?b"], {"g:username": "bobb"})
        assert not holds("StringLike", "g:UserName", ["AL*"], {"g:username": "alice"})
        assert holds("StringNotLike", "g:UserName", ["al*", "b*"], {"g:username": "carol"})
        assert not holds("StringNotLike", "g:UserName", ["al*", "b*"], {"g:username": "bob"})

    def test_start_end_with(self) -> None:
        assert holds("StringStartWith", "g:UserName", ["x", "al"], {"g:username": "alice"})
        assert not holds("StringStartWith", "g:UserName", ["li"], {"g:username": "alice"})
        assert holds("StringEndWith", "g:UserName", ["x", "ice"], {"g:username": "alice"})
        assert not holds("StringEndWith", "g:UserName", ["ali"], {"g:username": "alice"})

    def test_match_is_a_full_regex_match(self) -> None:
        assert holds("StringMatch", "g:UserName", [r"a\w+e"], {"g:username": "alice"})
        assert not holds("StringMatch", "g:UserName", [r"lic"], {"g:username": "alice"})
        assert holds("StringMatch", "g:UserName", [r"x", r".*lic.*"], {"g:username": "alice"})

    def test_invalid_regex_is_a_policy_error(self) -> None:
        err = parse_error(
            {
                "Version": "5.0",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "*",
                        "Condition": {"StringMatch": {"g:UserName": ["ok", "("]}},
                    }
                ],
            }
        )
        assert err.path == "Statement[0].Condition.StringMatch.g:UserName[1]"
        assert "invalid regular expression" in err.message


class TestNumberDateBoolIp:
    @pytest.mark.parametrize(
        ("operator", "values", "value", "expected"),
        [
            ("NumberEquals", ["1", "2"], "2", True),
            ("NumberEquals", ["1.0"], "1", True),
            ("NumberEquals", ["1"], "3", False),
            ("NumberNotEquals", ["1", "2"], "3", True),
            ("NumberNotEquals", ["1", "2"], "2.00", False),
            ("NumberLessThan", ["10"], "9.5", True),
            ("NumberLessThan", ["10"], "10", False),
            ("NumberLessThan", ["1", "10"], "5", True),
            ("NumberLessThanEquals", ["10"], "10", True),
            ("NumberLessThanEquals", ["10"], "1e2", False),
            ("NumberGreaterThan", ["10"], "11", True),
            ("NumberGreaterThan", ["10"], "10", False),
            ("NumberGreaterThanEquals", ["10"], "10", True),
            ("NumberGreaterThanEquals", ["10", "20"], "15", True),
            ("NumberGreaterThanEquals", ["-1"], "-2", False),
            ("NumberEquals", ["1"], "abc", False),
            ("NumberNotEquals", ["1"], "abc", False),  # uninterpretable: false even when negated
            ("NumberEquals", ["1"], "NaN", False),
            ("NumberLessThan", ["1"], "1_0", False),
        ],
    )
    def test_numbers(self, operator: str, values: list[str], value: str, expected: bool) -> None:
        assert holds(operator, "g:Count", values, {"g:count": value}) is expected

    def test_number_scalar_and_numeric_policy_values(self) -> None:
        assert holds("NumberEquals", "g:Count", [3], {"g:count": "3"})
        p = identity({"Effect": "Allow", "Action": "*", "Condition": {"NumberLessThan": {"g:Count": 5}}})
        assert decide(p, request(**{"g:count": "4"})) == Decision.ALLOW

    @pytest.mark.parametrize(
        ("operator", "values", "value", "expected"),
        [
            ("DateLessThan", ["2026-12-01T00:00:00Z"], "2026-11-27T10:00:00Z", True),
            ("DateLessThan", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:00Z", False),
            ("DateLessThanEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:00Z", True),
            ("DateGreaterThan", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:01Z", True),
            ("DateGreaterThan", ["2026-12-01T00:00:00Z"], "2026-11-30T23:59:59Z", False),
            ("DateGreaterThanEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T08:00:00+08:00", True),
            ("DateEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T08:00:00+08:00", True),
            ("DateEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:00.000Z", True),
            ("DateNotEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:01Z", True),
            ("DateNotEquals", ["2026-12-01T00:00:00Z"], "2026-12-01T00:00:00Z", False),
            ("DateLessThan", ["2026-12-01"], "2026-11-30T23:59:59Z", True),
            ("DateLessThan", ["2026-12-01T00:00:00Z"], "yesterday", False),
            ("DateNotEquals", ["2026-12-01T00:00:00Z"], "yesterday", False),
            ("DateLessThan", ["2026-12-01T00:00:00Z"], "2026-02-30T00:00:00Z", False),
        ],
    )
    def test_dates(self, operator: str, values: list[str], value: str, expected: bool) -> None:
        assert holds(operator, "g:CurrentTime", values, {"g:currenttime": value}) is expected

    def test_yaml_datetime_policy_value(self) -> None:
        from datetime import UTC, datetime

        assert holds(
            "DateLessThan",
            "g:CurrentTime",
            [datetime(2026, 12, 1, tzinfo=UTC)],
            {"g:currenttime": "2026-11-01T00:00:00Z"},
        )

    def test_bool(self) -> None:
        assert holds("Bool", "g:MFAPresent", ["true"], {"g:mfapresent": "true"})
        assert holds("Bool", "g:MFAPresent", [True], {"g:mfapresent": "TRUE"})
        assert not holds("Bool", "g:MFAPresent", ["true"], {"g:mfapresent": "false"})
        assert not holds("Bool", "g:MFAPresent", ["false"], {"g:mfapresent": "yes"})
        p = identity({"Effect": "Allow", "Action": "*", "Condition": {"Bool": {"g:MFAPresent": False}}})
        assert decide(p, request(**{"g:mfapresent": "false"})) == Decision.ALLOW

    def test_ip(self) -> None:
        nets = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
        assert holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "10.1.2.3"})
        assert holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "192.168.1.7"})
        assert holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "2001:db8::1"})
        assert holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "::ffff:10.0.0.1"})
        assert not holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "192.168.1.8"})
        assert not holds("IpAddress", "g:SourceIp", nets, {"g:sourceip": "not-an-ip"})
        assert holds("NotIpAddress", "g:SourceIp", nets, {"g:sourceip": "172.16.0.1"})
        assert not holds("NotIpAddress", "g:SourceIp", nets, {"g:sourceip": "10.9.9.9"})
        assert not holds("NotIpAddress", "g:SourceIp", nets, {"g:sourceip": "not-an-ip"})
        assert not holds("IpAddress", "g:SourceIp", ["::/0"], {"g:sourceip": "0.0.0.0"})

    @pytest.mark.parametrize(
        ("operator", "good", "value"),
        [
            ("NumberEquals", "1", "one"),
            ("NumberLessThan", "1", "1e"),
            ("DateLessThan", "2026-01-01T00:00:00Z", "tomorrow"),
            ("DateEquals", "2026-01-01T00:00:00Z", "2026-13-01T00:00:00Z"),
            ("Bool", "true", "yes"),
            ("IpAddress", "10.0.0.0/8", "10.0.0.0/33"),
            ("NotIpAddress", "::1", "host"),
            ("Null", "false", "maybe"),
        ],
    )
    def test_bad_policy_values(self, operator: str, good: str, value: str) -> None:
        err = parse_error(
            {
                "Version": "5.0",
                "Statement": [
                    {"Effect": "Allow", "Action": "*"},
                    {"Effect": "Allow", "Action": "*", "Condition": {operator: {"g:K": [good, value]}}},
                ],
            }
        )
        assert err.path == f"Statement[1].Condition.{operator}.g:K[1]"


class TestExistenceAndSets:
    def test_missing_key_is_false_for_every_operator(self) -> None:
        for operator, value in [
            ("StringEquals", "a"),
            ("StringNotEquals", "a"),
            ("StringNotLike", "a*"),
            ("NumberNotEquals", "1"),
            ("DateNotEquals", "2026-01-01T00:00:00Z"),
            ("NotIpAddress", "10.0.0.0/8"),
            ("Bool", "false"),
        ]:
            assert not holds(operator, "g:K", [value], {}), operator
            assert holds(operator + "IfExists", "g:K", [value], {}), operator

    def test_if_exists_with_present_key_behaves_like_base(self) -> None:
        assert holds("StringEqualsIfExists", "g:K", ["a"], {"g:k": "a"})
        assert not holds("StringEqualsIfExists", "g:K", ["a"], {"g:k": "b"})
        assert not holds("NumberLessThanIfExists", "g:K", ["1"], {"g:k": "x"})

    def test_null(self) -> None:
        assert holds("Null", "g:K", ["true"], {})
        assert not holds("Null", "g:K", ["true"], {"g:k": "v"})
        assert holds("Null", "g:K", ["false"], {"g:k": "v"})
        assert not holds("Null", "g:K", ["false"], {})
        assert holds("Null", "g:K", [True, False], {})
        assert holds("Null", "g:K", ["true"], {"g:k": []})  # an empty list is absent
        assert holds("NullIfExists", "g:K", ["false"], {"g:k": "v"})

    def test_null_takes_no_qualifier(self) -> None:
        err = parse_error(
            {
                "Version": "5.0",
                "Statement": [
                    {"Effect": "Allow", "Action": "*", "Condition": {"ForAnyValue:Null": {"g:K": ["true"]}}}
                ],
            }
        )
        assert err.path == "Statement[0].Condition.ForAnyValue:Null"

    def test_for_any_value(self) -> None:
        op = "ForAnyValue:StringEquals"
        assert holds(op, "g:TagKeys", ["team", "env"], {"g:tagkeys": ["owner", "env"]})
        assert not holds(op, "g:TagKeys", ["team", "env"], {"g:tagkeys": ["owner"]})
        assert not holds(op, "g:TagKeys", ["team"], {})
        assert not holds(op, "g:TagKeys", ["team"], {"g:tagkeys": []})
        assert holds("ForAnyValue:StringEqualsIfExists", "g:TagKeys", ["team"], {})
        assert holds("ForAnyValue:StringNotEquals", "g:TagKeys", ["team"], {"g:tagkeys": ["team", "x"]})
        assert not holds("ForAnyValue:StringNotEquals", "g:TagKeys", ["team"], {"g:tagkeys": ["team"]})

    def test_for_all_values(self) -> None:
        op = "ForAllValues:StringEquals"
        assert holds(op, "g:TagKeys", ["team", "env"], {"g:tagkeys": ["team", "env"]})
        assert holds(op, "g:TagKeys", ["team", "env"], {"g:tagkeys": ["env"]})
        assert not holds(op, "g:TagKeys", ["team", "env"], {"g:tagkeys": ["env", "owner"]})
        assert holds(op, "g:TagKeys", ["team"], {})  # absent -> true
        assert holds(op, "g:TagKeys", ["team"], {"g:tagkeys": []})
        assert holds("ForAllValues:StringLike", "g:TagKeys", ["t*", "e*"], {"g:tagkeys": ["team", "env"]})
        assert holds("ForAllValues:StringNotLike", "g:TagKeys", ["x*"], {"g:tagkeys": ["team", "env"]})
        assert not holds("ForAllValues:StringNotLike", "g:TagKeys", ["e*"], {"g:tagkeys": ["team", "env"]})
        assert not holds("ForAllValues:NumberLessThan", "g:N", ["5"], {"g:n": ["1", "x"]})

    def test_unqualified_operator_on_a_multi_valued_key(self) -> None:
        assert holds("StringEquals", "g:TagKeys", ["team"], {"g:tagkeys": ["env", "team"]})
        assert not holds("StringNotEquals", "g:TagKeys", ["team"], {"g:tagkeys": ["env", "team"]})
        assert holds("StringNotEquals", "g:TagKeys", ["team"], {"g:tagkeys": ["env", "owner"]})

    def test_keys_and_operators_are_and_ed(self) -> None:
        p = identity(
            {
                "Effect": "Allow",
                "Action": "*",
                "Condition": {
                    "StringEquals": {"g:UserName": ["alice"], "g:EnterpriseProjectId": [EP]},
                    "StringLike": {"g:ResourceTag/team": ["pay*"]},
                },
            }
        )
        full = {"g:username": "alice", "g:enterpriseprojectid": EP, "g:resourcetag/team": "payments"}
        assert decide(p, request(**full)) == Decision.ALLOW
        for missing in full:
            partial = {k: v for k, v in full.items() if k != missing}
            assert decide(p, request(**partial)) == Decision.IMPLICIT_DENY, missing
        assert decide(p, request(**{**full, "g:username": "bob"})) == Decision.IMPLICIT_DENY

    def test_scalar_policy_values_are_normalised(self) -> None:
        p = identity(
            {"Effect": "Allow", "Action": "*", "Condition": {"StringEquals": {"g:UserName": "alice"}}}
        )
        assert p.statements[0].conditions[0].values == ("alice",)
        assert p.statements[0].conditions[0].key == "g:username"
        assert decide(p, request(**{"g:username": "alice"})) == Decision.ALLOW

    def test_wrongly_typed_context_values_never_hold(self) -> None:
        p = cond("StringNotEquals", "g:K", "a")
        bad: dict[str, object] = {"g:k": 5}
        assert decide(p, AuthzRequest("a:b:c", None, PROJECT, None, bad)) == Decision.IMPLICIT_DENY  # type: ignore[arg-type]
        bad = {"g:k": ["b", 5]}
        assert decide(p, AuthzRequest("a:b:c", None, PROJECT, None, bad)) == Decision.IMPLICIT_DENY  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------
# Parsing and validation


def stmt(**fields: object) -> dict[str, object]:
    return {"Effect": "Allow", "Action": ["asm:mesh:get"], **fields}


class TestParsing:
    @pytest.mark.parametrize(
        ("doc", "path", "fragment"),
        [
            ([], "", "JSON object"),
            ({"Statement": [stmt()]}, "Version", "required"),
            ({"Version": "1.1", "Statement": [stmt()]}, "Version", '"5.0"'),
            ({"Version": "5.0"}, "Statement", "required"),
            ({"Version": "5.0", "Statement": []}, "Statement", "empty"),
            ({"Version": "5.0", "Statement": stmt()}, "Statement", "list"),
            ({"Version": "5.0", "Statement": [stmt()], "Id": "x"}, "Id", "unknown"),
            ({"Version": "5.0", "Statement": [stmt(), "x"]}, "Statement[1]", "object"),
            ({"Version": "5.0", "Statement": [stmt(Effect="allow")]}, "Statement[0].Effect", "Allow"),
            ({"Version": "5.0", "Statement": [{"Action": ["*"]}]}, "Statement[0].Effect", "required"),
            (
                {"Version": "5.0", "Statement": [stmt(NotAction=["x"])]},
                "Statement[0].NotAction",
                "not both",
            ),
            ({"Version": "5.0", "Statement": [{"Effect": "Deny"}]}, "Statement[0].Action", "required"),
            ({"Version": "5.0", "Statement": [stmt(Action=[])]}, "Statement[0].Action", "empty"),
            ({"Version": "5.0", "Statement": [stmt(Action=["a", 3])]}, "Statement[0].Action[1]", "string"),
            ({"Version": "5.0", "Statement": [stmt(Action=[""])]}, "Statement[0].Action[0]", "empty"),
            ({"Version": "5.0", "Statement": [stmt(Action={"a": 1})]}, "Statement[0].Action", "string"),
            ({"Version": "5.0", "Statement": [stmt(Resource=[None])]}, "Statement[0].Resource[0]", "string"),
            ({"Version": "5.0", "Statement": [stmt(Resource=["mesh-1"])]}, "Statement[0].Resource[0]", "URN"),
            (
                {"Version": "5.0", "Statement": [stmt(Resource=["asm::a:mesh:x"])]},
                "Statement[0].Resource[0]",
                "URN",
            ),
            ({"Version": "5.0", "Statement": [stmt(Sid=1)]}, "Statement[0].Sid", "string"),
            (
                {"Version": "5.0", "Statement": [stmt(NotResource=["*"])]},
                "Statement[0].NotResource",
                "unknown",
            ),
            ({"Version": "5.0", "Statement": [stmt(Condition=[])]}, "Statement[0].Condition", "object"),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEqual": {"g:K": ["a"]}})]},
                "Statement[0].Condition.StringEqual",
                "unknown condition operator",
            ),
            (
                {
                    "Version": "5.0",
                    "Statement": [stmt(Condition={"ForSomeValues:StringEquals": {"g:K": ["a"]}})],
                },
                "Statement[0].Condition.ForSomeValues:StringEquals",
                "unknown",
            ),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEquals": ["a"]})]},
                "Statement[0].Condition.StringEquals",
                "object",
            ),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEquals": {"g:K": []}})]},
                "Statement[0].Condition.StringEquals.g:K",
                "at least one value",
            ),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEquals": {"g:K": ["a", {"b": 1}]}})]},
                "Statement[0].Condition.StringEquals.g:K[1]",
                "string, number or boolean",
            ),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEquals": {"g:K": None}})]},
                "Statement[0].Condition.StringEquals.g:K",
                "string, number or boolean",
            ),
            (
                {"Version": "5.0", "Statement": [stmt(Condition={"StringEquals": {"": ["a"]}})]},
                "Statement[0].Condition.StringEquals.",
                "empty",
            ),
        ],
    )
    def test_identity_errors(self, doc: object, path: str, fragment: str) -> None:
        err = parse_error(doc)
        assert err.path == path
        assert fragment in err.message
        assert str(err) == f"{path}: {err.message}"
        assert isinstance(err, ValueError)

    def test_role_policy_rejects_resource_and_wrong_version(self) -> None:
        err = parse_error(
            {"Version": "1.1", "Statement": [stmt(), stmt(Resource=["*"])]},
            role_policy=True,
        )
        assert err.path == "Statement[1].Resource"
        err = parse_error({"Version": "5.0", "Statement": [stmt()]}, role_policy=True)
        assert err.path == "Version"
        assert '"1.1"' in err.message

    def test_role_policy(self) -> None:
        p = role({"Effect": "Allow", "Action": ["asm:mesh:*"], "Condition": {"StringEquals": {"g:K": "v"}}})
        assert p.version == "1.1"
        assert p.statements[0].resources is None

    def test_version_as_yaml_float(self) -> None:
        assert parse_identity_policy({"Version": 5.0, "Statement": [stmt()]}).version == "5.0"
        assert parse_role_policy({"Version": 1.1, "Statement": [stmt()]}).version == "1.1"

    def test_single_string_action_and_resource(self) -> None:
        p = parse_identity_policy(
            {"Version": "5.0", "Statement": [stmt(Action="asm:mesh:get", Resource="*")]}
        )
        assert p.statements[0].actions == ("asm:mesh:get",)
        assert p.statements[0].resources == ("*",)

    def test_statement_limit(self) -> None:
        ok = {"Version": "5.0", "Statement": [{"Effect": "Allow", "Action": "*"}] * MAX_STATEMENTS}
        assert len(parse_identity_policy(ok).statements) == MAX_STATEMENTS
        err = parse_error(
            {"Version": "5.0", "Statement": [{"Effect": "Allow", "Action": "*"}] * (MAX_STATEMENTS + 1)}
        )
        assert err.path == "Statement"

    def test_size_limit(self) -> None:
        err = parse_error({"Version": "5.0", "Statement": [stmt(Action=["a" * 1000] * 7)]})
        assert err.path == ""
        assert "6144" in err.message

    def test_deeply_nested_document(self) -> None:
        deep: object = []
        for _ in range(100_000):
            deep = [deep]
        err = parse_error({"Version": "5.0", "Statement": deep})
        assert err.path == ""

    def test_round_trip(self) -> None:
        condition = {"ForAnyValue:StringLike": {"g:TagKeys": ["a*", "b"]}, "Bool": {"g:X": [True]}}
        doc = {
            "Version": "5.0",
            "Statement": [
                {
                    "Sid": "s1",
                    "Effect": "Deny",
                    "NotAction": ["asm:mesh:get"],
                    "Resource": ["asm:*:*:mesh:*"],
                    "Condition": condition,
                }
            ],
        }
        p = parse_identity_policy(doc)
        out = p.to_document()
        assert out["Version"] == "5.0"
        assert out["Statement"] == [
            {
                "Sid": "s1",
                "Effect": "Deny",
                "NotAction": ["asm:mesh:get"],
                "Resource": ["asm:*:*:mesh:*"],
                "Condition": {
                    "ForAnyValue:StringLike": {"g:tagkeys": ["a*", "b"]},
                    "Bool": {"g:x": ["true"]},
                },
            }
        ]
        assert parse_identity_policy(json.loads(json.dumps(out))) == p
        assert hash(parse_identity_policy(out)) == hash(p)

    def test_json_helpers_are_cached(self) -> None:
        text = json.dumps({"Version": "5.0", "Statement": [stmt()]})
        assert parse_identity_policy_json(text) is parse_identity_policy_json(text)
        assert parse_role_policy_json(json.dumps({"Version": "1.1", "Statement": [stmt()]})).version == "1.1"
        with pytest.raises(PolicyError) as info:
            parse_identity_policy_json("{not json")
        assert info.value.path == ""

    def test_error_prefix_and_pickle(self) -> None:
        err = PolicyError("Statement[0].Effect", "required")
        assert str(err.prefixed("users[1].identityPolicies[0]")) == (
            "users[1].identityPolicies[0].Statement[0].Effect: required"
        )
        assert err.prefixed("x").path == "x.Statement[0].Effect"
        assert PolicyError("", "too big").prefixed("p").path == "p"
        again = pickle.loads(pickle.dumps(err))
        assert (again.path, again.message) == (err.path, err.message)

    def test_seed_example(self) -> None:
        p = parse_identity_policy(
            {
                "Version": "5.0",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["asm:mesh:getUpgradeJob"],
                        "Resource": ["asm:*:*:mesh:*"],
                        "Condition": {"StringEquals": {"g:ResourceTag/team": ["payments"]}},
                    }
                ],
            }
        )
        tagged = {"g:resourcetag/team": "payments"}
        assert decide(p, request(**tagged)) == Decision.ALLOW
        assert decide(p, request(**{"g:resourcetag/team": "web"})) == Decision.IMPLICIT_DENY
        assert decide(p, request("asm:mesh:upgrade", **tagged)) == Decision.IMPLICIT_DENY


# -------------------------------------------------------------------------------------------
# Scopes and decisions


ALLOW_ALL = role({"Effect": "Allow", "Action": ["asm:mesh:*"]})
DENY_ALL = role({"Effect": "Deny", "Action": ["asm:mesh:*"]})


class TestScopesAndDecisions:
    def test_scope_application(self) -> None:
        req = request(project_id=PROJECT, ep=EP)
        assert decide(ALLOW_ALL, req, Scope("account")) == Decision.ALLOW
        assert decide(ALLOW_ALL, req, Scope("identity")) == Decision.ALLOW
        assert decide(ALLOW_ALL, req, Scope("project", PROJECT)) == Decision.ALLOW
        assert decide(ALLOW_ALL, req, Scope("project", OTHER_PROJECT)) == Decision.IMPLICIT_DENY
        assert decide(ALLOW_ALL, req, Scope("enterprise_project", EP)) == Decision.ALLOW
        assert decide(ALLOW_ALL, req, Scope("enterprise_project", "0")) == Decision.IMPLICIT_DENY
        no_ep = request("asm:mesh:list", None, ep=None)
        assert decide(ALLOW_ALL, no_ep, Scope("enterprise_project", EP)) == Decision.IMPLICIT_DENY

    def test_scope_validation(self) -> None:
        with pytest.raises(ValueError):
            Scope("project")
        with pytest.raises(ValueError):
            Scope("enterprise_project", "")
        with pytest.raises(ValueError):
            Scope("region", "x")  # type: ignore[arg-type]
        assert Scope("account", "ignored") == Scope("account")

    def test_deny_wins_across_grants(self) -> None:
        grants = [Grant(ALLOW_ALL, Scope("account")), Grant(DENY_ALL, Scope("project", PROJECT))]
        assert evaluate(grants, request()) == Decision.EXPLICIT_DENY
        assert evaluate(grants, request(project_id=OTHER_PROJECT)) == Decision.ALLOW
        assert evaluate(list(reversed(grants)), request()) == Decision.EXPLICIT_DENY

    def test_no_grants_or_no_statements(self) -> None:
        assert evaluate([], request()) == Decision.IMPLICIT_DENY
        assert evaluate([Grant(Policy("5.0", ()), Scope("identity"))], request()) == Decision.IMPLICIT_DENY

    def test_deny_with_failing_condition_does_not_apply(self) -> None:
        deny = identity(
            {"Effect": "Deny", "Action": "*", "Condition": {"StringEquals": {"g:UserName": ["mallory"]}}},
            {"Effect": "Allow", "Action": "*"},
        )
        assert decide(deny, request(**{"g:username": "alice"})) == Decision.ALLOW
        assert decide(deny, request(**{"g:username": "mallory"})) == Decision.EXPLICIT_DENY

    def test_could_allow(self) -> None:
        grants = [
            Grant(role({"Effect": "Allow", "Action": ["asm:mesh:get"]}), Scope("project", PROJECT)),
            Grant(role({"Effect": "Allow", "Action": ["asm:mesh:list"]}), Scope("enterprise_project", EP)),
            Grant(identity({"Effect": "Deny", "Action": ["asm:mesh:delete"]}), Scope("identity")),
            Grant(
                identity({"Effect": "Allow", "Action": ["asm:mesh:up*"], "Resource": ["asm:*:*:mesh:x"]}),
                Scope("identity"),
            ),
        ]
        assert could_allow(grants, "ASM:MESH:GET", PROJECT)
        assert not could_allow(grants, "asm:mesh:get", OTHER_PROJECT)
        assert could_allow(grants, "asm:mesh:list", OTHER_PROJECT)
        assert not could_allow(grants, "asm:mesh:delete", PROJECT)
        assert could_allow(grants, "asm:mesh:upgrade", PROJECT)
        assert not could_allow([], "asm:mesh:get", PROJECT)

    def test_statements_constructed_directly(self) -> None:
        s = Statement(effect="Allow", actions=("asm:mesh:GET",), resources=("asm:*:*:mesh:*",))
        c = Condition("StringEquals", "g:UserName", ("alice",))
        assert c.key == "g:username"
        p = Policy("5.0", (Statement("Allow", ("asm:mesh:get",), conditions=(c,)), s))
        assert decide(p, request("asm:mesh:get")) == Decision.ALLOW
        assert s.admits_action("asm:mesh:get")
        with pytest.raises(PolicyError):
            Condition("Nope", "k", ("v",))

    def test_decision_values(self) -> None:
        assert [d.value for d in Decision] == ["allow", "explicit deny", "implicit deny"]
        assert str(Decision.EXPLICIT_DENY) == "explicit deny"


# -------------------------------------------------------------------------------------------
# Action catalogue


class TestCatalogue:
    def test_every_endpoint_has_a_catalogued_action(self) -> None:
        assert len(actions.ENDPOINTS) == 14
        for action in actions.ENDPOINTS.values():
            assert actions.CATALOGUE[action.name] is action
        assert set(actions.CATALOGUE) == {
            "asm:mesh:getUpgradeJob",
            "asm:mesh:upgrade",
            "asm:mesh:create",
            "asm:mesh:list",
            "asm:mesh:get",
            "asm:mesh:update",
            "asm:mesh:delete",
            "asm:mesh:listNamespaces",
            "asm:mesh:getNamespace",
            "asm:mesh:updateNamespace",
        }

    def test_shapes(self) -> None:
        expected = actions.Action(
            "asm:mesh:getUpgradeJob", "Read", "mesh", ("g:EnterpriseProjectId", "g:ResourceTag/<tag-key>")
        )
        assert expected == actions.GET_UPGRADE_JOB
        assert actions.CREATE.resource_type is None
        assert actions.LIST.resource_type is None
        assert actions.LIST.access_level == "List"
        assert set(actions.CREATE.condition_keys) == {
            "g:EnterpriseProjectId",
            "g:RequestTag/<tag-key>",
            "g:TagKeys",
        }
        for a in (actions.UPGRADE, actions.GET, actions.UPDATE, actions.DELETE):
            assert a.resource_type == "mesh"

    def test_mesh_urn(self) -> None:
        urn = actions.mesh_urn("cn-north-4", "acc", "m1")
        assert urn == "asm:cn-north-4:acc:mesh:m1"
        p = identity({"Effect": "Allow", "Action": "asm:mesh:get", "Resource": "asm:cn-north-4:*:mesh:*"})
        assert decide(p, request("asm:mesh:get", urn)) == Decision.ALLOW
        with pytest.raises(ValueError):
            actions.mesh_urn("cn-north-4", "acc", "a:b")
        with pytest.raises(ValueError):
            actions.mesh_urn("", "acc", "m")

    def test_context_key_helpers(self) -> None:
        assert actions.resource_tag_key("Team") == "g:resourcetag/team"
        assert actions.request_tag_key("Team") == "g:requesttag/team"
        assert actions.context_key("g:EnterpriseProjectId") == "g:enterpriseprojectid"
