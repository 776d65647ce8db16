"""A small IAM policy evaluator for the policy tests: what a request may do under identity policies
and a permissions boundary, with only the policy elements and condition operators these policies
use; anything else raises UnsupportedPolicy, so a policy it cannot judge fails its test.

What it models, as IAM's policy evaluation logic documents it: a statement applies when its
Action (or NotAction) and Resource (or NotResource) match and every condition holds; an applying
Deny wins over any Allow; without an applying Allow the request is implicitly denied; with a
permissions boundary, both the identity policies and the boundary must allow. It does not model
resource-based policies, SCPs or session policies: these tests have none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

ContextValue = str | bool | list[str]
Decision = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]

STATEMENT_ELEMENTS = frozenset(
    ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition")
)
# The base operators implemented; each negated one is its positive twin, negated.
OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool", "Null"}
NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}
SET_QUALIFIERS = {"", "ForAllValues", "ForAnyValue"}


class UnsupportedPolicy(Exception):
    """A policy element, operator or context this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorisation request: an action on a resource, with its request context."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@cache
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters (colons and slashes too), `?` one character."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def like(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _wildcard(pattern, ignore_case).match(value) is not None


def arn_like(pattern: str, value: str) -> bool:
    """ArnLike and ArnEquals (the same test in IAM) and Resource matching: each of the first five
    colon-separated parts of the ARN on its own, so a `*` in the region never reaches into the
    account; the sixth, the resource (colons and all), as a whole. Not an ARN: the whole string.
    A pattern that starts like an ARN but has fewer parts is refused (IAM's reading is unclear)."""
    if pattern == "*":
        return True
    parts, values = pattern.split(":", 5), value.split(":", 5)
    if pattern.startswith("arn:") and len(parts) != 6:
        raise UnsupportedPolicy(f"an ARN pattern without six parts: {pattern}")
    if len(parts) != 6 or len(values) != 6:
        return like(pattern, value)
    return all(like(p, v) for p, v in zip(parts, values, strict=True))


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _policy_values(values: Any) -> list[str]:
    # JSON policies may spell Bool values as true/false; IAM compares them as strings.
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(values)]


def _compare(operator: str, expected: str, actual: ContextValue) -> bool:
    if isinstance(actual, list):
        raise UnsupportedPolicy("a multivalued context value needs ForAllValues or ForAnyValue")
    if operator == "Bool":
        if not isinstance(actual, bool):
            raise UnsupportedPolicy(f"Bool on a non-boolean context value {actual!r}")
        return str(actual).lower() == expected.lower()
    if isinstance(actual, bool):
        raise UnsupportedPolicy(f"{operator} on a boolean context value")
    if operator == "StringEquals":
        return actual == expected
    if operator == "StringLike":
        return like(expected, actual)
    if operator in {"ArnEquals", "ArnLike"}:
        return arn_like(expected, actual)
    raise UnsupportedPolicy(f"condition operator {operator}")


def parse_operator(operator: str) -> tuple[str, str, bool, bool]:
    """(set qualifier, base operator, negated, IfExists) of an operator such as
    ForAllValues:StringNotEquals; an operator this evaluator does not implement raises."""
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    negated = name in NEGATED
    base = NEGATED.get(name, name)
    if qualifier not in SET_QUALIFIERS or base not in OPERATORS:
        raise UnsupportedPolicy(f"condition operator {operator}")
    if base == "Null" and (qualifier or if_exists):
        raise UnsupportedPolicy(f"condition operator {operator}")
    return qualifier, base, negated, if_exists


def _without_the_key(qualifier: str, *, negated: bool, if_exists: bool) -> bool:
    """IAM: a missing key makes ForAllValues true (vacuously), ForAnyValue false, ...IfExists
    true, a negated operator true (nothing there to equal) and any other operator false."""
    if qualifier:
        return qualifier == "ForAllValues"
    return if_exists or negated


def condition_holds(
    operator: str, key: str, values: Any, context: Mapping[str, ContextValue]
) -> bool:
    qualifier, base, negated, if_exists = parse_operator(operator)
    expected = _policy_values(values)
    if base == "Null":
        if expected not in (["true"], ["false"]):
            raise UnsupportedPolicy(f"Null with {values!r}")
        # "true": the key must be absent; "false": present.
        return (key not in context) == (expected == ["true"])
    if key not in context:
        return _without_the_key(qualifier, negated=negated, if_exists=if_exists)
    actual = context[key]

    def one(value: ContextValue) -> bool:
        matched = any(_compare(base, e, value) for e in expected)
        return not matched if negated else matched

    if qualifier == "":
        return one(actual)
    members: list[ContextValue] = list(actual) if isinstance(actual, list) else [actual]
    if qualifier == "ForAllValues":
        return all(one(m) for m in members)
    return any(one(m) for m in members)


def check(policy: Mapping[str, Any]) -> None:
    """Refuse a policy with an element or operator this evaluator would otherwise skip."""
    for statement in policy["Statement"]:
        unknown = set(statement) - STATEMENT_ELEMENTS
        if unknown:
            raise UnsupportedPolicy(f"statement elements {sorted(unknown)}")
        if statement.get("Effect") not in {"Allow", "Deny"}:
            raise UnsupportedPolicy(f"Effect {statement.get('Effect')!r}")
        for one, other in (("Action", "NotAction"), ("Resource", "NotResource")):
            if (one in statement) == (other in statement):
                raise UnsupportedPolicy(f"exactly one of {one} and {other}: {statement}")
        for operator in statement.get("Condition", {}):
            parse_operator(operator)


def applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        action_matches = any(
            like(a, request.action, ignore_case=True) for a in as_list(statement["Action"])
        )
    else:
        action_matches = not any(
            like(a, request.action, ignore_case=True) for a in as_list(statement["NotAction"])
        )
    if not action_matches:
        return False
    if "Resource" in statement:
        resource_matches = any(
            arn_like(r, request.resource) for r in as_list(statement["Resource"])
        )
    else:
        resource_matches = not any(
            arn_like(r, request.resource) for r in as_list(statement["NotResource"])
        )
    if not resource_matches:
        return False
    return all(
        condition_holds(operator, key, values, request.context)
        for operator, block in statement.get("Condition", {}).items()
        for key, values in block.items()
    )


def decide(policies: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """The decision of these policies together (all of one kind: identity policies, or a
    boundary) on this request."""
    statements = []
    for policy in policies:
        check(policy)
        statements.extend(policy["Statement"])
    applying = [s for s in statements if applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "ExplicitDeny"
    if any(s["Effect"] == "Allow" for s in applying):
        return "Allow"
    return "ImplicitDeny"


def allowed(
    identity: Sequence[Mapping[str, Any]],
    request: Request,
    *,
    boundary: Mapping[str, Any] | None = None,
) -> bool:
    """Whether a principal with these identity policies (and this permissions boundary) may."""
    if decide(identity, request) != "Allow":
        return False
    return boundary is None or decide([boundary], request) == "Allow"
