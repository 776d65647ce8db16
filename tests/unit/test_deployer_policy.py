"""docs/deployer-policy.json, the sample policy of the role that runs `sam deploy`, checked
against template.yaml: it is a valid policy document, every resource type the stack creates
(SAM's types expanded into what they become) has its service among the policy's actions, and
every action CloudFormation's own handlers call for those types is either granted or listed
below with the reason this template does without it. Then, judged with conditions by the tests'
IAM evaluator (tests/unit/iam_policy.py): the escalations the review found are denied (roles
without the permissions boundary, a boundary lifted or swapped, trust changed, the boundary
policy rewritten, roles passed to other services, KMS keys administered without the stack's tag)
while the calls a deploy of this template makes are allowed.

Nothing here reaches AWS: the handlers' permissions come from the resource schemas bundled with
cfn-lint, and the SAM expansion is checked against SAM's own translator, run locally."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from tests.unit import iam_policy as iam
from tests.unit import test_template

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs/deployer-policy.json"
# template.yaml through the CloudFormation-tag-aware loader: test_template's fixture, shared.
template = test_template.template
translated = test_template.translated  # template.yaml through SAM's translator
STACK_PREFIX = "glider-rebalance-trigger"  # samconfig.toml's stack names all start with it

# What each SAM resource type becomes. A SAM type, a resource-making function property or an
# event type that is missing here fails the test: add what SAM makes of it (the transform test
# below holds the map to SAM's translator, for everything template.yaml uses).
SAM_RESOURCES: dict[str, tuple[str, ...]] = {
    "AWS::Serverless::Function": ("AWS::Lambda::Function",),
    "AWS::Serverless::LayerVersion": ("AWS::Lambda::LayerVersion",),
    "AWS::Serverless::SimpleTable": ("AWS::DynamoDB::Table",),
}
# SAM generates an execution role (with its logs and event-source policies) for a function
# that names none; this template's function names its own (TriggerFunctionRole).
GENERATED_FUNCTION_ROLE = ("AWS::IAM::Role",)
FUNCTION_PROPERTIES: dict[str, tuple[str, ...]] = {
    "EventInvokeConfig": ("AWS::Lambda::EventInvokeConfig",),
    "AutoPublishAlias": ("AWS::Lambda::Version", "AWS::Lambda::Alias"),
    "FunctionUrlConfig": ("AWS::Lambda::Url", "AWS::Lambda::Permission"),
}
# Function properties that make resources this map does not describe yet.
UNMAPPED_FUNCTION_PROPERTIES = {"DeploymentPreference", "ProvisionedConcurrencyConfig"}
FUNCTION_EVENTS: dict[str, tuple[str, ...]] = {
    "SQS": ("AWS::Lambda::EventSourceMapping",),
    "Kinesis": ("AWS::Lambda::EventSourceMapping",),
    "DynamoDB": ("AWS::Lambda::EventSourceMapping",),
    "EventBridgeRule": ("AWS::Events::Rule", "AWS::Lambda::Permission"),
    "CloudWatchEvent": ("AWS::Events::Rule", "AWS::Lambda::Permission"),
    "Schedule": ("AWS::Events::Rule", "AWS::Lambda::Permission"),
    "SNS": ("AWS::SNS::Subscription", "AWS::Lambda::Permission"),
}
# An event's DeadLetterConfig with a Type (instead of an Arn) has SAM create the queue.
GENERATED_DEAD_LETTER_QUEUE = ("AWS::SQS::Queue", "AWS::SQS::QueuePolicy")

# The IAM service prefix of each resource type's namespace.
SERVICE_PREFIX = {
    "CloudWatch": "cloudwatch",
    "DynamoDB": "dynamodb",
    "Events": "events",
    "IAM": "iam",
    "KMS": "kms",
    "Lambda": "lambda",
    "Logs": "logs",
    "Scheduler": "scheduler",
    "SNS": "sns",
    "SQS": "sqs",
}
# Services sam deploy itself uses besides those of the stack's resources.
DEPLOY_SERVICES = {"cloudformation", "s3", "iam"}

# Actions the resource handlers may call that the policy does not grant, and why.
NOT_GRANTED = {
    # Lambda::Function
    "ec2:DescribeNetworkInterfaces": "no VpcConfig",
    "ec2:DescribeSecurityGroups": "no VpcConfig",
    "ec2:DescribeSubnets": "no VpcConfig",
    "ec2:DescribeVpcs": "no VpcConfig",
    "elasticfilesystem:DescribeMountTargets": "no FileSystemConfigs",
    "s3files:ListMountTargets": "no FileSystemConfigs",
    "lambda:GetCodeSigningConfig": "no CodeSigningConfigArn",
    "lambda:PutFunctionCodeSigningConfig": "no CodeSigningConfigArn",
    "lambda:DeleteFunctionCodeSigningConfig": "no CodeSigningConfigArn",
    "lambda:PassCapacityProvider": "no CapacityProviderConfig (Lambda managed instances)",
    "lambda:AssociateRuntimeAlias": "no runtime alias",
    "kms:CreateGrant": "no KmsKeyArn on the function; the table and the artifact bucket use "
    "AWS managed keys, whose key policies admit the account's principals through the service",
    "kms:Decrypt": "no customer managed key on the function, its event source filters or the table",
    "kms:Encrypt": "no customer managed key on the function or the table",
    "kms:GenerateDataKey": "no customer managed key on the function or its event source filters",
    "kms:RevokeGrant": "no customer managed key on the table",
    # DynamoDB::Table
    "dynamodb:ImportTable": "no ImportSourceSpecification",
    "dynamodb:DescribeImport": "no ImportSourceSpecification",
    "dynamodb:CreateTableReplica": "not a global table",
    "dynamodb:AssociateTableReplica": "not a global table",
    "dynamodb:EnableKinesisStreamingDestination": "no KinesisStreamSpecification",
    "dynamodb:DisableKinesisStreamingDestination": "no KinesisStreamSpecification",
    "dynamodb:UpdateKinesisStreamingDestination": "no KinesisStreamSpecification",
    "kinesis:DescribeStream": "no KinesisStreamSpecification",
    "kinesis:PutRecords": "no KinesisStreamSpecification",
    "dynamodb:PutResourcePolicy": "no ResourcePolicy",
    "dynamodb:DeleteResourcePolicy": "no ResourcePolicy",
    "dynamodb:GetItem": "the deployer never reads or writes the guard's records (import only)",
    "dynamodb:PutItem": "the deployer never reads or writes the guard's records (import only)",
    "dynamodb:UpdateItem": "the deployer never reads or writes the guard's records (import only)",
    "dynamodb:DeleteItem": "the deployer never reads or writes the guard's records (import only)",
    "dynamodb:BatchWriteItem": "the deployer never reads or writes the guard's records",
    "dynamodb:Query": "the deployer never reads or writes the guard's records (import only)",
    "dynamodb:Scan": "the deployer never reads or writes the guard's records (import only)",
    "iam:CreateServiceLinkedRole": "no replicas or contributor insights needing a linked role",
    "logs:CreateLogStream": "the table's import logs (no import)",
    "logs:DescribeLogStreams": "the table's import logs (no import)",
    "logs:PutLogEvents": "the table's import logs (no import)",
    "s3:GetObjectMetadata": "the table's import source (no import)",
    # Logs::LogGroup
    "logs:AssociateKmsKey": "no KmsKeyId",
    "logs:DisassociateKmsKey": "no KmsKeyId",
    "logs:PutDataProtectionPolicy": "no DataProtectionPolicy",
    "logs:PutIndexPolicy": "no FieldIndexPolicies",
    "logs:DeleteIndexPolicy": "no FieldIndexPolicies",
    "logs:PutResourcePolicy": "no ResourcePolicyDocument",
    "logs:DeleteResourcePolicy": "no ResourcePolicyDocument",
    "logs:CreateLogDelivery": "no log delivery",
    "logs:PutLogGroupDeletionProtection": "no DeletionProtectionEnabled",
    "logs:PutBearerTokenAuthentication": "no BearerTokenAuthenticationEnabled",
    "firehose:TagDeliveryStream": "no log delivery",
    "s3:REST.PUT.OBJECT": "no log delivery",
    # IAM::Role: inline policies only; the boundary stays and the trust policies never change
    "iam:AttachRolePolicy": "inline policies only: attaching a managed policy is not needed",
    "iam:DeleteRolePermissionsBoundary": "denied: every role keeps the boundary",
    "iam:UpdateAssumeRolePolicy": "denied: IAM cannot condition what a trust policy says, and "
    "the template's never change after creation (a change is an administrator's deploy)",
    # SNS::Topic
    "sns:PutDataProtectionPolicy": "no DataProtectionPolicy",
}
HANDLERS = ("create", "read", "update", "delete")  # not list: CloudFormation never lists here

# Actions without resource-level permissions: the only ones on "Resource": "*".
ON_ANY_RESOURCE = {
    "kms:CreateKey",
    "kms:ListAliases",
    "lambda:CreateEventSourceMapping",  # scoped by its lambda:FunctionArn condition instead
    "cloudwatch:DescribeAlarms",
    "logs:DescribeResourcePolicies",
    "logs:DescribeIndexPolicies",
}
# Resources not named after the stack, and why.
NOT_BY_STACK_NAME = {
    "stack/aws-sam-cli-managed-default/": "SAM's managed stack (resolve_s3), read only",
    "aws-sam-cli-managed-default-samclisourcebucket-": "its bucket, listed only (objects: ours)",
    "transform/Serverless-2016-10-31": "the SAM transform",
    "layer:DependenciesLayer": "SAM names a layer after its logical id",
    "event-source-mapping:": "ids are random: changes scoped by lambda:FunctionArn",
    "log-group:*": "logs:DescribeLogGroups only",
    "key/": "key ids are random",
    "rule/": "SAM's rule names are the stack's cut short to fit 64 characters: rule/glider-*",
}
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(POLICY.read_text())
    return loaded


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def granted_actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in as_list(s["Action"]) if s["Effect"] == "Allow"}


def grants(policy: dict[str, Any], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in granted_actions(policy))


def function_resources(properties: dict[str, Any]) -> Iterator[str]:
    if "Role" not in properties:
        yield from GENERATED_FUNCTION_ROLE
    unmapped = UNMAPPED_FUNCTION_PROPERTIES & set(properties)
    assert not unmapped, f"add what SAM makes of {sorted(unmapped)} to the map"
    for name, made in FUNCTION_PROPERTIES.items():
        if name in properties:
            yield from made
    for name, event in properties.get("Events", {}).items():
        assert event["Type"] in FUNCTION_EVENTS, f"add what SAM makes of {name}'s event type"
        yield from FUNCTION_EVENTS[event["Type"]]
        if "Type" in event.get("Properties", {}).get("DeadLetterConfig", {}):
            yield from GENERATED_DEAD_LETTER_QUEUE


def created_types(template: dict[str, Any]) -> set[str]:
    """Every resource type the stack creates, the SAM ones expanded by the maps above."""
    function_globals = template.get("Globals", {}).get("Function", {})
    created: set[str] = set()
    for name, resource in template["Resources"].items():
        kind = resource["Type"]
        if not kind.startswith("AWS::Serverless::"):
            created.add(kind)
            continue
        assert kind in SAM_RESOURCES, f"add what SAM makes of {name} ({kind}) to the map"
        created.update(SAM_RESOURCES[kind])
        if kind == "AWS::Serverless::Function":
            created.update(function_resources({**function_globals, **resource["Properties"]}))
    return created


def service_of(kind: str) -> str:
    namespace = kind.split("::")[1]
    assert namespace in SERVICE_PREFIX, f"add the IAM service prefix of {kind}"
    return SERVICE_PREFIX[namespace]


def test_the_policy_is_a_valid_policy_document(policy: dict[str, Any]) -> None:
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert isinstance(statements, list)
    assert statements
    sids = [s.get("Sid") for s in statements]
    assert all(isinstance(sid, str) and sid.isalnum() for sid in sids), sids
    assert len(set(sids)) == len(sids)
    for statement in statements:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert statement["Effect"] in {"Allow", "Deny"}
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert actions
        assert resources
        assert all(ACTION.match(a) for a in actions), actions  # no wildcards, no service:*
        assert len(set(actions)) == len(actions), statement["Sid"]
        assert all(r == "*" or r.startswith("arn:aws:") for r in resources), resources
        assert isinstance(statement.get("Condition", {}), dict)


def test_only_actions_without_resource_level_permissions_are_on_any_resource(
    policy: dict[str, Any],
) -> None:
    for statement in policy["Statement"]:
        if "*" in as_list(statement["Resource"]):
            assert as_list(statement["Resource"]) == ["*"]
            assert set(as_list(statement["Action"])) <= ON_ANY_RESOURCE, statement["Sid"]


def test_the_resources_are_the_stacks_own_by_name(policy: dict[str, Any]) -> None:
    """Every resource allowed is named after the stacks, in the account and region the
    placeholders stand for, except those listed in NOT_BY_STACK_NAME. (A Deny may reach wider:
    it only takes away.)"""
    for statement in policy["Statement"]:
        if statement["Effect"] == "Deny":
            continue
        for arn in as_list(statement["Resource"]):
            if arn == "*":
                continue
            _, partition, _service, region, account, resource = arn.split(":", 5)
            assert partition == "aws"
            assert region in {"REGION", ""}, arn  # "": IAM, S3 and CloudWatch dashboards
            assert account in {"ACCOUNT_ID", "aws", ""}, arn  # aws: the SAM transform
            assert STACK_PREFIX in resource or any(
                resource.startswith(prefix) for prefix in NOT_BY_STACK_NAME
            ), arn


def test_sam_types_map_to_what_sams_translator_creates(template: dict[str, Any]) -> None:
    made = {resource["Type"] for resource in translated(template)["Resources"].values()}
    assert created_types(template) == made


def test_every_created_resource_type_has_its_service_in_the_policy(
    template: dict[str, Any], policy: dict[str, Any]
) -> None:
    services = {action.split(":")[0] for action in granted_actions(policy)}
    missing = {kind for kind in created_types(template) if service_of(kind) not in services}
    assert not missing, f"the policy grants nothing of the services of {sorted(missing)}"


def test_the_policy_grants_no_service_the_deploy_does_not_need(
    template: dict[str, Any], policy: dict[str, Any]
) -> None:
    needed = {service_of(kind) for kind in created_types(template)} | DEPLOY_SERVICES
    services = {action.split(":")[0] for action in granted_actions(policy)}
    assert services <= needed, sorted(services - needed)


def test_every_action_the_handlers_call_is_granted_or_explained(
    template: dict[str, Any], policy: dict[str, Any]
) -> None:
    unexplained: dict[str, set[str]] = {}
    for kind in sorted(created_types(template)):
        handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", kind).schema["handlers"]
        for handler in HANDLERS:
            for action in handlers.get(handler, {}).get("permissions", []):
                if action not in NOT_GRANTED and not grants(policy, action):
                    unexplained.setdefault(action, set()).add(f"{kind} {handler}")
    assert not unexplained, f"grant these or say in NOT_GRANTED why not: {unexplained}"


def test_nothing_is_both_granted_and_explained_away(policy: dict[str, Any]) -> None:
    assert not {action for action in NOT_GRANTED if grants(policy, action)}


def test_sam_deploy_itself_can_run(policy: dict[str, Any]) -> None:
    """What the SAM CLI calls around the change set (samcli/lib/deploy, resolve_s3 = true in
    every environment of samconfig.toml), and the roles it hands to Lambda and Scheduler."""
    for action in (
        "cloudformation:DescribeStacks",
        "cloudformation:GetTemplateSummary",
        "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DescribeStackEvents",
        "s3:PutObject",
        "s3:GetObject",
        "iam:PassRole",
    ):
        assert grants(policy, action), action
    transform = [
        s for s in policy["Statement"] if ":transform/Serverless-2016-10-31" in str(s["Resource"])
    ]
    assert transform
    assert transform[0]["Action"] == "cloudformation:CreateChangeSet"
    [pass_role] = [s for s in policy["Statement"] if "iam:PassRole" in as_list(s["Action"])]
    assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"] == [
        "lambda.amazonaws.com",
        "scheduler.amazonaws.com",
    ]


def test_the_layer_the_stack_publishes_is_the_one_the_policy_names(
    template: dict[str, Any], policy: dict[str, Any]
) -> None:
    """The template names its layer after the stack (`${AWS::StackName}-dependencies`), which
    the policy scopes to the project's stacks."""

    def name(value: Any) -> str:
        if isinstance(value, dict) and "Fn::Sub" in value:
            return str(value["Fn::Sub"]).replace("${AWS::StackName}", "glider-rebalance-trigger*")
        return str(value)

    layer_names = {
        name(resource["Properties"]["LayerName"])
        for resource in translated(template)["Resources"].values()
        if resource["Type"] == "AWS::Lambda::LayerVersion"
    }
    assert layer_names == {"glider-rebalance-trigger*-dependencies"}
    resources = {r for s in policy["Statement"] for r in as_list(s["Resource"])}
    for name in layer_names:
        assert f"arn:aws:lambda:REGION:ACCOUNT_ID:layer:{name}" in resources
        assert f"arn:aws:lambda:REGION:ACCOUNT_ID:layer:{name}:*" in resources


# ---------------------------------------------------------------- escalations, evaluated
# The policy as an administrator installs it (docs/deployment.md's sed), judged by the tests'
# IAM evaluator (tests/unit/iam_policy.py) with conditions and all.

REGION, ACCOUNT = "eu-west-1", "123456789012"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/glider-rebalance-trigger-boundary"
ADMINISTRATOR = "arn:aws:iam::aws:policy/AdministratorAccess"
STACK_TAG = "glider-rebalance-trigger:stack"  # the tag the template puts on its KMS key
# AdministratorAccess, beside the deployer policy: only an explicit Deny survives it.
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
ROLE = f"arn:aws:iam::{ACCOUNT}:role/glider-rebalance-trigger-prod-TriggerFunctionRole-1A2B3C4D5E6F"
ROLES = [
    ROLE,
    f"arn:aws:iam::{ACCOUNT}:role/glider-rebalance-trigger-RebalanceScheduleRole-9Z8Y7X6W5V4U",
    f"arn:aws:iam::{ACCOUNT}:role/glider-rebalance-trigger-dev-TriggerFunctionRole-0Q1W2E3R4T5Y",
]
OTHER_ROLES = [
    f"arn:aws:iam::{ACCOUNT}:role/admin",
    f"arn:aws:iam::{ACCOUNT}:role/glider-deployer-prod",
]
ANOTHER_ACCOUNTS_ROLE = "arn:aws:iam::999999999999:role/glider-rebalance-trigger-prod-Role-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEYS = [
    f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0987dcba-09ba-87dc-65fe-0987654321ba",
    f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab",
]
# What KMS authorises the Tags of a CreateKey request against: all keys of the account and
# region ("At a minimum, the permission must cover all KMS keys in the account and Region",
# KMS developer guide, CreateKey: add tags to a new KMS key), not the new key's id.
ALL_KEYS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*"
OURS: dict[str, iam.ContextValue] = {
    f"aws:ResourceTag/{STACK_TAG}": "glider-rebalance-trigger-prod"
}
NEW_KEY: dict[str, iam.ContextValue] = {
    "kms:KeySpec": "SYMMETRIC_DEFAULT",
    "kms:KeyUsage": "ENCRYPT_DECRYPT",
}
BYPASS_OFF: dict[str, iam.ContextValue] = {"kms:BypassPolicyLockoutSafetyCheck": False}


@pytest.fixture(scope="module")
def installed() -> dict[str, Any]:
    """The policy with its placeholders filled in, as the setup's sed fills them."""
    text = POLICY.read_text().replace("REGION", REGION).replace("ACCOUNT_ID", ACCOUNT)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def decision(
    policies: list[dict[str, Any]], action: str, resource: str, **context: iam.ContextValue
) -> iam.Decision:
    return iam.decide(policies, iam.Request(action, resource, context))


def boundary(arn: str = BOUNDARY_ARN) -> dict[str, iam.ContextValue]:
    return {"iam:PermissionsBoundary": arn}


def test_no_role_is_created_without_the_boundary(installed: dict[str, Any]) -> None:
    """Without it, the deploy role could create an administrator role trusting itself."""
    for role in ROLES:
        for context in ({}, boundary(ADMINISTRATOR)):
            assert decision([installed], "iam:CreateRole", role, **context) != "Allow", context
            # Denied outright: no broader policy on the deploy role can undo it.
            assert decision([installed, ALLOW_ALL], "iam:CreateRole", role, **context) == (
                "ExplicitDeny"
            ), context


def test_with_the_boundary_only_the_stacks_roles_are_created(installed: dict[str, Any]) -> None:
    for role in ROLES:
        assert decision([installed], "iam:CreateRole", role, **boundary()) == "Allow", role
    for role in [*OTHER_ROLES, ANOTHER_ACCOUNTS_ROLE]:
        assert decision([installed], "iam:CreateRole", role, **boundary()) != "Allow", role


def test_no_policy_is_put_on_a_role_without_the_boundary(installed: dict[str, Any]) -> None:
    for action in ("iam:PutRolePolicy", "iam:AttachRolePolicy"):
        for context in ({}, boundary(ADMINISTRATOR)):
            assert decision([installed], action, ROLE, **context) != "Allow", (action, context)
            assert decision([installed, ALLOW_ALL], action, ROLE, **context) == "ExplicitDeny"
    # With it, the stack's inline policies (never a managed one: no AttachRolePolicy).
    assert decision([installed], "iam:PutRolePolicy", ROLE, **boundary()) == "Allow"
    assert decision([installed], "iam:AttachRolePolicy", ROLE, **boundary()) != "Allow"


def test_the_boundary_is_never_lifted_or_swapped(installed: dict[str, Any]) -> None:
    for role in ROLES + OTHER_ROLES:
        assert (
            decision(
                [installed, ALLOW_ALL], "iam:DeleteRolePermissionsBoundary", role, **boundary()
            )
            == "ExplicitDeny"
        )
        for context in ({}, boundary(ADMINISTRATOR)):
            assert (
                decision([installed, ALLOW_ALL], "iam:PutRolePermissionsBoundary", role, **context)
                == "ExplicitDeny"
            )
    # Putting the boundary itself on the stack's roles: how a stack deployed before it gets it.
    for role in ROLES:
        assert decision([installed], "iam:PutRolePermissionsBoundary", role, **boundary()) == (
            "Allow"
        )


def test_the_boundary_policy_itself_is_never_changed(installed: dict[str, Any]) -> None:
    for action in (
        "iam:CreatePolicyVersion",
        "iam:SetDefaultPolicyVersion",
        "iam:DeletePolicyVersion",
        "iam:DeletePolicy",
    ):
        assert decision([installed, ALLOW_ALL], action, BOUNDARY_ARN) == "ExplicitDeny", action


def test_no_trust_policy_is_changed(installed: dict[str, Any]) -> None:
    """IAM has no condition key for what a trust policy says, so the deploy role may not change
    one at all: the template's never change after creation."""
    for role in ROLES + OTHER_ROLES:
        assert decision([installed, ALLOW_ALL], "iam:UpdateAssumeRolePolicy", role) == (
            "ExplicitDeny"
        )


def test_the_stacks_roles_are_passed_only_to_lambda_and_scheduler(
    installed: dict[str, Any],
) -> None:
    for role in ROLES:
        for service in ("lambda.amazonaws.com", "scheduler.amazonaws.com"):
            context: dict[str, iam.ContextValue] = {"iam:PassedToService": service}
            assert decision([installed], "iam:PassRole", role, **context) == "Allow"
        for service in ("ec2.amazonaws.com", "cloudformation.amazonaws.com", "glue.amazonaws.com"):
            context = {"iam:PassedToService": service}
            assert decision([installed], "iam:PassRole", role, **context) != "Allow", service
    for role in [*OTHER_ROLES, ANOTHER_ACCOUNTS_ROLE]:
        context = {"iam:PassedToService": "lambda.amazonaws.com"}
        assert decision([installed], "iam:PassRole", role, **context) != "Allow", role


KEY_ADMINISTRATION = (
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:UpdateKeyDescription",
    "kms:TagResource",
    "kms:UntagResource",
)


def test_only_keys_with_the_stacks_tag_are_administered(installed: dict[str, Any]) -> None:
    someone_elses = {f"aws:ResourceTag/{STACK_TAG}": "payments"}
    for action in KEY_ADMINISTRATION:
        for key in [KEY, *OTHER_KEYS]:
            assert decision([installed], action, key) != "Allow", (action, key)
            assert decision([installed], action, key, **someone_elses) != "Allow", (action, key)
        assert decision([installed], action, KEY, **OURS) == "Allow", action


def test_the_stacks_tag_is_never_put_on_another_key(installed: dict[str, Any]) -> None:
    """Else the deploy role could tag any key and then administer it."""
    tagging: dict[str, iam.ContextValue] = {
        f"aws:RequestTag/{STACK_TAG}": "glider-rebalance-trigger-prod",
        "aws:TagKeys": [STACK_TAG],
    }
    for key in OTHER_KEYS:
        assert decision([installed, ALLOW_ALL], "kms:TagResource", key, **tagging) == (
            "ExplicitDeny"
        ), key


def test_keys_are_created_only_with_the_stacks_tag(installed: dict[str, Any]) -> None:
    create = NEW_KEY | BYPASS_OFF
    assert decision([installed], "kms:CreateKey", "*", **create) != "Allow"
    other: dict[str, iam.ContextValue] = {f"aws:RequestTag/{STACK_TAG}": "payments"}
    assert decision([installed], "kms:CreateKey", "*", **create, **other) != "Allow"
    tag: dict[str, iam.ContextValue] = {f"aws:RequestTag/{STACK_TAG}": "glider-rebalance-trigger"}
    assert decision([installed], "kms:CreateKey", "*", **create, **tag) == "Allow"
    # CreateKey's Tags are authorised as kms:TagResource on all keys: that tag, and only it.
    keys: dict[str, iam.ContextValue] = {"aws:TagKeys": [STACK_TAG]}
    assert decision([installed], "kms:TagResource", ALL_KEYS, **tag, **keys) == "Allow"
    more: dict[str, iam.ContextValue] = {
        "aws:TagKeys": [STACK_TAG, "team"],
        "aws:RequestTag/team": "x",
    }
    assert decision([installed], "kms:TagResource", ALL_KEYS, **tag, **more) != "Allow"


def test_what_sam_deploy_of_this_template_does_is_allowed(installed: dict[str, Any]) -> None:
    """The calls of CloudFormation's handlers that the conditions above judge, as a deploy makes
    them: roles with the boundary, roles passed to their services, the key with its tag."""
    tag: dict[str, iam.ContextValue] = {f"aws:RequestTag/{STACK_TAG}": "glider-rebalance-trigger"}
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:glider-rebalance-trigger-Function-1"
    calls: list[tuple[str, str, dict[str, iam.ContextValue]]] = [
        *(("iam:CreateRole", role, boundary()) for role in ROLES),
        ("iam:PutRolePolicy", ROLE, boundary()),
        ("iam:PutRolePermissionsBoundary", ROLE, boundary()),
        # Reading, emptying and deleting a role need no boundary: a role of a stack deployed
        # before it existed can still be updated to carry it, or deleted.
        ("iam:GetRole", ROLE, {}),
        ("iam:GetRolePolicy", ROLE, {}),
        ("iam:ListRolePolicies", ROLE, {}),
        ("iam:DeleteRolePolicy", ROLE, {}),
        ("iam:DeleteRole", ROLE, {}),
        ("iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        ("iam:PassRole", ROLES[1], {"iam:PassedToService": "scheduler.amazonaws.com"}),
        ("kms:CreateKey", "*", NEW_KEY | BYPASS_OFF | tag),
        ("kms:TagResource", ALL_KEYS, tag | {"aws:TagKeys": [STACK_TAG]}),
        ("kms:EnableKeyRotation", KEY, OURS),
        ("kms:PutKeyPolicy", KEY, OURS),
        ("kms:DescribeKey", KEY, {}),
        ("kms:GetKeyPolicy", KEY, {}),
        ("kms:GetKeyRotationStatus", KEY, {}),
        ("kms:ListResourceTags", KEY, {}),
        ("kms:ScheduleKeyDeletion", KEY, OURS),
        ("lambda:CreateEventSourceMapping", "*", {"lambda:FunctionArn": function}),
    ]
    refused = [
        (action, resource, context)
        for action, resource, context in calls
        if decision([installed], action, resource, **context) != "Allow"
    ]
    assert refused == []


def test_the_deny_statements_take_nothing_the_deploy_is_granted(installed: dict[str, Any]) -> None:
    """Every action of an unconditional Allow is still allowed on a resource it names (its
    wildcards filled in): the Deny statements reach only what they are meant to."""
    refused = []
    for statement in installed["Statement"]:
        if statement["Effect"] != "Allow" or "Condition" in statement:
            continue
        for resource in as_list(statement["Resource"]):
            sample = resource.replace("*", "x")
            for action in as_list(statement["Action"]):
                if decision([installed], action, sample) != "Allow":
                    refused.append((action, sample))
    assert refused == []


def test_the_template_tags_its_key_as_the_policy_expects(
    template: dict[str, Any], installed: dict[str, Any]
) -> None:
    key = template["Resources"]["AlarmTopicKey"]["Properties"]
    assert {"Key": STACK_TAG, "Value": {"Ref": "AWS::StackName"}} in key["Tags"]
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    stacks = [
        e["global"]["parameters"]["stack_name"] for e in config.values() if isinstance(e, dict)
    ]
    assert stacks
    for stack in stacks:
        tag: dict[str, iam.ContextValue] = {f"aws:RequestTag/{STACK_TAG}": stack}
        create = NEW_KEY | BYPASS_OFF | tag
        assert decision([installed], "kms:CreateKey", "*", **create) == "Allow", stack
        ours: dict[str, iam.ContextValue] = {f"aws:ResourceTag/{STACK_TAG}": stack}
        assert decision([installed], "kms:ScheduleKeyDeletion", KEY, **ours) == "Allow"


def test_the_boundary_the_policy_requires_is_the_one_the_template_takes(
    template: dict[str, Any], installed: dict[str, Any]
) -> None:
    named = {
        value
        for statement in installed["Statement"]
        for block in statement.get("Condition", {}).values()
        for key, values in block.items()
        if key == "iam:PermissionsBoundary"
        for value in as_list(values)
    }
    assert named == {BOUNDARY_ARN}
    parameter = template["Parameters"]["PermissionsBoundaryArn"]
    assert re.fullmatch(parameter["AllowedPattern"], BOUNDARY_ARN)


def test_roles_are_passed_only_to_the_services_the_templates_roles_trust(
    template: dict[str, Any], installed: dict[str, Any]
) -> None:
    trusted = {
        service
        for resource in translated(template)["Resources"].values()
        if resource["Type"] == "AWS::IAM::Role"
        for statement in resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        for service in as_list(statement["Principal"]["Service"])
    }
    assert trusted == {"lambda.amazonaws.com", "scheduler.amazonaws.com"}
    passed_to = {
        service
        for statement in installed["Statement"]
        if "iam:PassRole" in as_list(statement["Action"]) and statement["Effect"] == "Allow"
        for service in as_list(statement["Condition"]["StringEquals"]["iam:PassedToService"])
    }
    assert passed_to == trusted
