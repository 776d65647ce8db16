"""docs/deployer-policy.json, the sample policy of the role that runs `sam deploy`, checked
against template.yaml: it is a valid policy document, every resource type the stack creates
(SAM's types expanded into what they become) has its service among the policy's actions, and
every action CloudFormation's own handlers call for those types is either granted or listed
below with the reason this template does without it.

Nothing here reaches AWS: the handlers' permissions come from the resource schemas bundled with
cfn-lint, and the SAM expansion is checked against SAM's own translator, run locally."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tests.unit import test_template

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs/deployer-policy.json"
# template.yaml through the CloudFormation-tag-aware loader: test_template's fixture, shared.
template = test_template.template
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
    # IAM::Role: inline policies only, and no boundary a deployer could lift
    "iam:AttachRolePolicy": "inline policies only: attaching a managed policy is not needed",
    "iam:PutRolePermissionsBoundary": "no PermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary": "no PermissionsBoundary, and never the deployer's to lift",
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


def translated(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml through SAM's translator, as `sam deploy` has CloudFormation do it (local
    paths replaced by the S3 URIs `sam package` would put there)."""
    plain: dict[str, Any] = json.loads(json.dumps(copy.deepcopy(template)))
    for resource in plain["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(resource.get("Properties", {}).get(uri), str):
                resource["Properties"][uri] = "s3://artifacts/key"
    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1")
    )
    result: dict[str, Any] = translator.translate(
        plain, parameter_values={}, get_managed_policy_map=dict
    )
    return result


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
    """Every resource is named after the stacks, in the account and region the placeholders
    stand for, except those listed in NOT_BY_STACK_NAME."""
    for statement in policy["Statement"]:
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
