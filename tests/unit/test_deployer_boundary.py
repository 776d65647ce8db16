"""docs/deployer-boundary.json, the permissions boundary every role of the stack carries, checked
against template.yaml: everything the template's roles are granted lies inside it, and a role
that the deploy role mints with any policy at all (AdministratorAccess, say) gets no more than
the stack's own resources allow: no IAM, no STS, no other secret, queue, table or function.

Judged by the tests' IAM evaluator (tests/unit/iam_policy.py), with conditions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.unit import iam_policy as iam
from tests.unit import test_template
from tests.unit.test_deployer_policy import (
    ACCOUNT,
    ALLOW_ALL,
    BOUNDARY_ARN,
    REGION,
    STACK_PREFIX,
    as_list,
)

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = ROOT / "docs/deployer-boundary.json"
template = test_template.template  # template.yaml, the shared fixture

STACK = "glider-rebalance-trigger-prod"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
# A deployment's answers, every optional statement on (Fn::If takes its first branch).
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:glider/api-key-AbCdEf"
SECRET_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARAMETERS = {
    "GliderApiKeySecretArn": SECRET,
    "GliderApiKeySecretKmsKeyArn": SECRET_KEY,
    "PermissionsBoundaryArn": BOUNDARY_ARN,
}
# Services the boundary lets the stack's roles use: the function's and the schedule's needs.
SERVICES = {"logs", "sqs", "dynamodb", "secretsmanager", "kms", "events", "xray", "lambda"}
# Resources not named after the stack, and why each is still bounded.
NOT_BY_STACK_NAME = {
    ":secret:glider/": "the Glider API key's secret: the template's parameter must name one here",
    ":key/*": "customer managed key of that secret: kms:Decrypt only through Secrets Manager",
    ":event-bus/*": "OutcomeEventBusName is any bus of the account: events:PutEvents only",
}
ON_ANY_RESOURCE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}  # no resource-level ARNs
NO_VALUE = object()


@pytest.fixture(scope="module")
def boundary() -> dict[str, Any]:
    """The boundary with its placeholders filled in, as the setup's sed fills them."""
    text = BOUNDARY.read_text().replace("REGION", REGION).replace("ACCOUNT_ID", ACCOUNT)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# ---------------------------------------------------------------- the template, resolved


class Resolver:
    """The values CloudFormation gives the template's intrinsic functions, for one stack."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template

    def name(self, logical: str) -> str:
        resource = self.template["Resources"][logical]
        for key in ("QueueName", "FunctionName", "TableName", "LogGroupName", "Name"):
            if key in resource.get("Properties", {}):
                return str(self.resolve(resource["Properties"][key]))
        # CloudFormation's generated names: the stack's, the logical id, a random suffix.
        return f"{STACK}-{logical}-1A2B3C4D5E6F"

    def arn(self, logical: str) -> str:
        kind, name = self.template["Resources"][logical]["Type"], self.name(logical)
        arns = {
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        }
        assert kind in arns, f"add the ARN of a {kind}"
        return arns[kind]

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.template["Parameters"]:
            return PARAMETERS.get(name, self.template["Parameters"][name].get("Default"))
        if self.template["Resources"][name]["Type"] == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(name)}"
        return self.name(name)

    def attribute(self, logical: str, attribute: str) -> str:
        assert attribute == "Arn", f"add {logical}.{attribute}"
        return self.arn(logical)

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.attribute(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::")):
            [(function, argument)] = value.items()
            return self.intrinsic(function, argument)
        return {k: self.resolve(v) for k, v in value.items()}

    def intrinsic(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            return self.attribute(*argument)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self.sub(text, variables)
        if function == "Fn::If":
            return self.resolve(argument[1])
        assert function == "Fn::Join", f"resolve {function}"
        return argument[0].join(str(v) for v in self.resolve(argument[1]))


def role_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, statement) for every statement of every role's inline policies, resolved."""
    resolver = Resolver(template)
    found = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        assert "ManagedPolicyArns" not in resource["Properties"], f"{name}: judge its policies"
        for policy in resource["Properties"]["Policies"]:
            for statement in resolver.resolve(policy["PolicyDocument"])["Statement"]:
                found.append((name, statement))
    return found


def context_of(statement: dict[str, Any]) -> dict[str, iam.ContextValue]:
    """The request context under which a statement of the template's roles takes effect."""
    context: dict[str, iam.ContextValue] = {}
    for operator, block in statement.get("Condition", {}).items():
        assert operator == "StringEquals", f"give the context for {operator}"
        for key, value in block.items():
            context[key] = value
    return context


# ---------------------------------------------------------------- the document


def test_the_boundary_is_an_allow_list_of_the_stacks_services(boundary: dict[str, Any]) -> None:
    assert set(boundary) == {"Version", "Statement"}
    assert boundary["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in boundary["Statement"]]
    assert len(set(sids)) == len(sids)
    for statement in boundary["Statement"]:
        assert statement["Effect"] == "Allow", statement["Sid"]  # a boundary only caps
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        actions = as_list(statement["Action"])
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a) for a in actions), actions
        assert {a.split(":")[0] for a in actions} <= SERVICES, statement["Sid"]


def test_no_iam_no_sts_and_no_role_passing(boundary: dict[str, Any]) -> None:
    actions = {a for s in boundary["Statement"] for a in as_list(s["Action"])}
    assert not {a for a in actions if a.split(":")[0] in {"iam", "sts", "organizations"}}
    for action in ("iam:PassRole", "sts:AssumeRole", "iam:CreateRole", "iam:PutRolePolicy"):
        assert iam.decide([boundary], iam.Request(action, "*")) == "ImplicitDeny", action


def test_every_resource_is_the_stacks_or_says_why_not(boundary: dict[str, Any]) -> None:
    for statement in boundary["Statement"]:
        for arn in as_list(statement["Resource"]):
            if arn == "*":
                assert set(as_list(statement["Action"])) <= ON_ANY_RESOURCE, statement["Sid"]
                continue
            _, partition, _service, region, account, resource = arn.split(":", 5)
            assert (partition, region, account) == ("aws", REGION, ACCOUNT), arn
            # The resource's name, after its type (log-group:, table/, function:; a queue: none).
            name = re.split(r"[:/]", resource, maxsplit=1)[-1]
            assert name.startswith(STACK_PREFIX) or any(
                f":{resource}".startswith(prefix) for prefix in NOT_BY_STACK_NAME
            ), arn


def test_everything_the_templates_roles_are_granted_is_inside_the_boundary(
    template: dict[str, Any], boundary: dict[str, Any]
) -> None:
    statements = role_statements(template)
    assert {role for role, _ in statements} == {"TriggerFunctionRole", "RebalanceScheduleRole"}
    outside = []
    for role, statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                request = iam.Request(action, resource, context_of(statement))
                if iam.decide([boundary], request) != "Allow":
                    outside.append((role, action, resource))
    assert outside == [], "widen the boundary (by name) or narrow the role"


def test_the_sample_parameters_are_ones_the_template_accepts(template: dict[str, Any]) -> None:
    for name, value in PARAMETERS.items():
        assert re.fullmatch(template["Parameters"][name]["AllowedPattern"], value), name


def test_a_minted_role_with_administrator_access_stays_inside_the_stack(
    boundary: dict[str, Any],
) -> None:
    """The deploy role can create a role with any policy and trust (IAM cannot condition a
    trust policy): the boundary is what keeps such a role from being an administrator."""
    other = f"arn:aws:sqs:{REGION}:{ACCOUNT}:payments-queue"
    refused = [
        ("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/backdoor", {}),
        ("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/backdoor", {}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {}),
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {}),
        (
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-AbCdEf",
            {},
        ),
        ("secretsmanager:PutSecretValue", SECRET, {}),
        ("kms:Decrypt", SECRET_KEY, {}),
        (
            "kms:Decrypt",
            SECRET_KEY,
            {"kms:ViaService": f"s3.{REGION}.amazonaws.com"},
        ),
        ("kms:PutKeyPolicy", SECRET_KEY, {}),
        ("sqs:SendMessage", other, {}),
        ("sqs:DeleteQueue", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-work", {}),
        ("sqs:SetQueueAttributes", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-work", {}),
        (
            "dynamodb:Scan",
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{STACK}-IdempotencyTable-1",
            {},
        ),
        ("dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/payments", {}),
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments", {}),
        (
            "lambda:UpdateFunctionCode",
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-TriggerFunction-1",
            {},
        ),
        (
            "logs:PutLogEvents",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:payments:log-stream:x",
            {},
        ),
        ("s3:GetObject", "arn:aws:s3:::any-bucket/key", {}),
        ("ec2:RunInstances", "*", {}),
        ("sqs:SendMessage", f"arn:aws:sqs:{REGION}:999999999999:{STACK}-work", {}),
    ]
    for action, resource, context in refused:
        request = iam.Request(action, resource, context)
        assert not iam.allowed([ALLOW_ALL], request, boundary=boundary), (action, resource)
    # What the function itself may do, such a role may do too: that is the boundary's ceiling.
    work = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-work"
    assert iam.allowed([ALLOW_ALL], iam.Request("sqs:SendMessage", work), boundary=boundary)


def test_the_setup_creates_the_boundary_the_policies_name() -> None:
    """docs/deployment.md has an administrator create this file as the managed policy whose ARN
    the deployer policy requires and the template's parameter accepts."""
    setup = (ROOT / "docs/deployment.md").read_text()
    name = BOUNDARY_ARN.rsplit("/", 1)[1]
    assert f"--policy-name {name}" in setup
    assert "docs/deployer-boundary.json" in setup
