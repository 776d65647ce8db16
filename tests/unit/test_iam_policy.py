"""The policy tests' IAM evaluator (tests/unit/iam_policy.py) against IAM's documented rules, so
that what it allows or denies in the deployer and boundary tests can be believed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.iam_policy import Request, UnsupportedPolicy, allowed, arn_like, decide

ROLE = "arn:aws:iam::123456789012:role/app-role"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def test_actions_match_with_wildcards_and_without_regard_to_case() -> None:
    p = [policy(allow("iam:Get*"))]
    assert decide(p, Request("IAM:GetRole", ROLE)) == "Allow"
    assert decide(p, Request("iam:ListRoles", ROLE)) == "ImplicitDeny"
    assert decide([policy(allow("s3:Get?bject"))], Request("s3:GetObject", "x")) == "Allow"


def test_arn_parts_match_on_their_own_and_the_resource_part_as_a_whole() -> None:
    assert arn_like(
        "arn:aws:logs:*:123456789012:log-group:app*",
        "arn:aws:logs:eu-west-1:123456789012:log-group:app:log-stream:1",
    )
    # A star in the account does not reach into the resource part.
    assert not arn_like("arn:aws:iam::*:role/x", "arn:aws:iam::1:2:role/x")
    with pytest.raises(UnsupportedPolicy):
        arn_like("arn:aws:kms:*", "arn:aws:kms:eu-west-1:123456789012:key/1")
    assert not arn_like("arn:aws:iam::123456789012:role/app*", "arn:aws:iam::999999999999:role/app")
    assert not arn_like("arn:aws:kms:r:1:key/????", "arn:aws:kms:r:1:key/*x")
    assert arn_like("*", "anything")


def test_not_action_and_not_resource_match_everything_else() -> None:
    p = [policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": ROLE})]
    assert decide(p, Request("s3:GetObject", "arn:aws:s3:::bucket/key")) == "Allow"
    assert decide(p, Request("iam:GetRole", "arn:aws:s3:::bucket/key")) == "ImplicitDeny"
    assert decide(p, Request("s3:GetObject", ROLE)) == "ImplicitDeny"


def test_an_explicit_deny_wins_over_any_allow_in_any_policy() -> None:
    admin = policy(allow("*"))
    deny = policy({"Effect": "Deny", "Action": "iam:DeleteRole", "Resource": "*"})
    assert decide([admin, deny], Request("iam:DeleteRole", ROLE)) == "ExplicitDeny"
    assert decide([admin, deny], Request("iam:GetRole", ROLE)) == "Allow"


def test_a_boundary_caps_what_the_identity_policies_allow() -> None:
    admin = policy(allow("*"))
    boundary = policy(allow("sqs:SendMessage"))
    assert allowed([admin], Request("sqs:SendMessage", "q"), boundary=boundary)
    assert not allowed([admin], Request("iam:CreateUser", "u"), boundary=boundary)
    # The boundary alone grants nothing.
    assert not allowed([policy()], Request("sqs:SendMessage", "q"), boundary=boundary)


def condition(operator: str, key: str, value: Any) -> list[dict[str, Any]]:
    return [policy(allow("s3:GetObject", Condition={operator: {key: value}}))]


def decision(operator: str, value: Any, context: dict[str, Any]) -> str:
    return decide(condition(operator, "k", value), Request("s3:GetObject", "o", context))


@pytest.mark.parametrize(
    ("operator", "value", "context", "expected"),
    [
        ("StringEquals", "a", {"k": "a"}, "Allow"),
        ("StringEquals", "a", {"k": "A"}, "ImplicitDeny"),  # case-sensitive
        ("StringEquals", ["a", "b"], {"k": "b"}, "Allow"),  # values: any of them
        ("StringEquals", "a", {}, "ImplicitDeny"),  # a missing key never equals
        ("StringNotEquals", "a", {"k": "b"}, "Allow"),
        ("StringNotEquals", ["a", "b"], {"k": "b"}, "ImplicitDeny"),
        ("StringNotEquals", "a", {}, "Allow"),  # a missing key is "not equal"
        ("StringLike", "app-*", {"k": "app-dev"}, "Allow"),
        ("StringLike", "app-*", {"k": "other"}, "ImplicitDeny"),
        ("StringEqualsIfExists", "a", {}, "Allow"),
        ("ArnLike", "arn:aws:sqs:*:1:q*", {"k": "arn:aws:sqs:r:1:q1"}, "Allow"),
        ("ArnEquals", "arn:aws:sqs:r:1:q", {"k": "arn:aws:sqs:r:2:q"}, "ImplicitDeny"),
        ("Null", "true", {}, "Allow"),
        ("Null", "true", {"k": "x"}, "ImplicitDeny"),
        ("Null", "false", {"k": "x"}, "Allow"),
        ("Bool", "false", {"k": False}, "Allow"),
        ("Bool", "false", {}, "ImplicitDeny"),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "b"]}, "Allow"),
        ("ForAllValues:StringEquals", ["a"], {"k": ["a", "c"]}, "ImplicitDeny"),
        ("ForAllValues:StringEquals", ["a"], {}, "Allow"),  # vacuously true
        ("ForAnyValue:StringEquals", ["a"], {"k": ["c", "a"]}, "Allow"),
        ("ForAnyValue:StringEquals", ["a"], {}, "ImplicitDeny"),
    ],
)
def test_condition_operators_follow_iam(
    operator: str, value: Any, context: dict[str, Any], expected: str
) -> None:
    assert decision(operator, value, context) == expected


def test_conditions_of_a_statement_must_all_hold() -> None:
    both = [
        policy(
            allow(
                "s3:GetObject",
                Condition={"StringEquals": {"a": "1", "b": "2"}, "StringLike": {"c": "x*"}},
            )
        )
    ]
    assert decide(both, Request("s3:GetObject", "o", {"a": "1", "b": "2", "c": "xy"})) == "Allow"
    assert decide(both, Request("s3:GetObject", "o", {"a": "1", "b": "2"})) == "ImplicitDeny"


@pytest.mark.parametrize(
    "operator",
    ["NumericLessThan", "DateGreaterThan", "IpAddress", "StringEqualsIgnoreCase", "Foo:StringLike"],
)
def test_an_operator_it_does_not_know_fails_even_where_the_statement_never_applies(
    operator: str,
) -> None:
    unknown = [policy(allow("s3:GetObject", Condition={operator: {"k": "1"}}))]
    with pytest.raises(UnsupportedPolicy):
        decide(unknown, Request("sqs:SendMessage", "q"))


def test_elements_it_does_not_know_fail() -> None:
    with pytest.raises(UnsupportedPolicy):
        decide([policy(allow("s3:GetObject", Principal="*"))], Request("s3:GetObject", "o"))
    with pytest.raises(UnsupportedPolicy):
        decide([policy({"Effect": "Allow", "Action": "s3:*"})], Request("s3:GetObject", "o"))


def test_a_multivalued_context_value_needs_a_set_operator() -> None:
    with pytest.raises(UnsupportedPolicy):
        decision("StringEquals", "a", {"k": ["a"]})
