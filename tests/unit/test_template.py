"""What template.yaml promises about who may trigger and how long the guard remembers, checked
against the template itself and the function's settings (so the two cannot drift apart)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.settings import GUARD_MARGIN_SECONDS, Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


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


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = template["Resources"]["TriggerFunction"]["Properties"][
        "Environment"
    ]["Variables"]
    return variables


def test_the_upstream_rule_matches_source_and_detail_type(template: dict[str, Any]) -> None:
    rule = template["Resources"]["TriggerFunctionUpstreamRebalanceRequested"]
    pattern = rule["Properties"]["EventPattern"]

    assert pattern == {
        "source": [{"Ref": "UpstreamEventSource"}],
        "detail-type": [{"Ref": "UpstreamDetailType"}],
    }
    source = template["Parameters"]["UpstreamEventSource"]
    # A trust decision: no producer is named for a deployment; without one there is no rule.
    assert source["Default"] == ""
    allowed = re.compile(source["AllowedPattern"])
    assert allowed.match("com.example.treasury")
    assert not allowed.match("aws.events")
    assert allowed.fullmatch("")


def test_without_an_upstream_event_source_there_is_no_rule(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    rule_name = "TriggerFunctionUpstreamRebalanceRequested"
    rule = resources[rule_name]
    [target] = rule["Properties"]["Targets"]
    # What the rule, its permission and the DLQ policy that admits its dead letters need.
    needing = {
        name
        for name, resource in resources.items()
        if name != rule_name and f'"{rule_name}"' in json.dumps(resource)
    }
    assert needing == {
        "TriggerFunctionUpstreamRebalanceRequestedPermission",
        "DeadLetterQueuePolicy",
        "WorkQueueUpstreamPolicy",  # where pause sends its events
    }
    for name in (rule_name, *needing):
        assert resources[name]["Condition"] == "HasUpstreamEventSource"
    assert template["Conditions"]["HasUpstreamEventSource"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "UpstreamEventSource"}, ""]}]
    }
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_guard_remembers_longer_than_any_copy_can_arrive(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    work = resources["WorkQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    environment = function_environment(template)
    ttl = template["Parameters"]["IdempotencyTtlSeconds"]

    # The function is told the retention the queues really have ...
    assert int(environment["WORK_QUEUE_RETENTION_SECONDS"]) == work
    assert int(environment["DLQ_RETENTION_SECONDS"]) == dlq
    assert environment["IDEMPOTENCY_TTL_SECONDS"] == {"Ref": "IdempotencyTtlSeconds"}
    # ... and the smallest TTL a deployment can choose covers it, as the function requires.
    assert ttl["MinValue"] == work + dlq + GUARD_MARGIN_SECONDS
    assert ttl["Default"] == Settings.idempotency_ttl_seconds == ttl["MinValue"]
    assert (work, dlq) == (
        Settings.work_queue_retention_seconds,
        Settings.dlq_retention_seconds,
    )


REQUIRED = {
    "GLIDER_API_KEY_SECRET_ID": "secret",
    "DLQ_URL": "https://sqs.example/1/dlq",
    "WORK_QUEUE_URL": "https://sqs.example/1/work",
    "IDEMPOTENCY_TABLE_NAME": "glider-trigger-idempotency",
    "MAX_RECEIVE_COUNT": "5",
    "FOLLOW_UP_QUEUE_URL": "https://sqs.example/1/follow-up",
}
# Parameters whose default the template chooses, where the function alone does without.
NO_FUNCTION_DEFAULT = {
    "OUTCOME_EVENT_BUS_NAME": "the account's default bus; unset, no outcome events",
}
NOT_THE_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL"}  # Powertools reads it


def parameter_variables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function's environment variables that a template parameter sets, with it."""
    parameters = template["Parameters"]
    return {
        variable: parameters[value["Ref"]]
        for variable, value in function_environment(template).items()
        if isinstance(value, dict)
        and value.get("Ref") in parameters
        and "Default" in parameters[value["Ref"]]
        and variable not in NOT_THE_FUNCTIONS
    }


# The settings a deploy decides, each through a parameter; every other setting keeps the
# function's default (a parameter that only repeated it would be one more prompt of `sam deploy
# --guided`; docs/configuration.md says how to change one).
DEPLOY_DECISIONS = {
    "GLIDER_API_BASE_URL",
    "GLIDER_API_VERSION",
    "TRACING",
    "DEFAULT_SKIP_SCHEDULE_VALIDATION",  # the tools read the parameter too
    "IDEMPOTENCY_TTL_SECONDS",  # the guard's window; the tools read the parameter too
    "MAX_CONCURRENCY",
    "RATE_LIMIT_PER_SECOND",
    "MAX_RECEIVE_COUNT",
    "FOLLOW_OUTCOMES",  # the tools read the parameter too
    "OUTCOME_EVENT_BUS_NAME",
}


def test_only_deploy_decisions_are_parameters(template: dict[str, Any]) -> None:
    assert set(parameter_variables(template)) == DEPLOY_DECISIONS


def test_a_parameters_default_is_the_functions_own(template: dict[str, Any]) -> None:
    defaults = Settings.from_environment(REQUIRED)
    variables = parameter_variables(template)
    assert "MAX_CONCURRENCY" in variables

    for variable, parameter in variables.items():
        if variable in NO_FUNCTION_DEFAULT:
            continue
        configured = Settings.from_environment(REQUIRED | {variable: str(parameter["Default"])})
        assert configured == defaults, variable


def test_a_parameters_range_is_the_one_the_function_accepts(template: dict[str, Any]) -> None:
    ranged = {v: p for v, p in parameter_variables(template).items() if "MinValue" in p}
    assert {"MAX_CONCURRENCY", "MAX_RECEIVE_COUNT", "IDEMPOTENCY_TTL_SECONDS"} <= set(ranged)

    for variable, parameter in ranged.items():
        low, high = parameter["MinValue"], parameter["MaxValue"]
        for accepted in (low, high):
            Settings.from_environment(REQUIRED | {variable: str(accepted)})
        for refused in (low - 1, high + 1):
            with pytest.raises(ConfigurationError):
                Settings.from_environment(REQUIRED | {variable: str(refused)})


def test_follow_ups_have_their_queue_event_source_and_a_bus_scoped_permission(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    function = resources["TriggerFunction"]["Properties"]
    environment = function_environment(template)
    follow_ups = function["Events"]["FollowUps"]["Properties"]
    statements = resources["TriggerFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    put_events = [
        s["Fn::If"][1]
        for s in statements
        if isinstance(s, dict) and "Fn::If" in s and s["Fn::If"][1].get("Sid") == "PutOutcomeEvents"
    ]

    assert environment["FOLLOW_UP_QUEUE_URL"] == {"Ref": "FollowUpQueue"}
    assert follow_ups["Queue"] == {"Fn::GetAtt": ["FollowUpQueue", "Arn"]}
    assert follow_ups["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = resources["FollowUpQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
    }
    assert queue["SqsManagedSseEnabled"] is True
    [statement] = put_events
    assert statement["Action"] == "events:PutEvents"
    assert "event-bus/${OutcomeEventBusName}" in statement["Resource"]["Fn::Sub"]
    assert {"RebalancesFailedAlarm", "RebalanceOutcomeUnknownAlarm"} <= set(resources)


def test_every_parameter_is_grouped_once_and_labelled(template: dict[str, Any]) -> None:
    """A guided deploy and the console show the parameters in these groups, in this order."""
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [name for group in interface["ParameterGroups"] for name in group["Parameters"]]

    assert sorted(grouped) == sorted(template["Parameters"])  # each one, once
    assert set(interface["ParameterLabels"]) == set(template["Parameters"])
    assert grouped[0] == "GliderApiKeySecretArn"  # the one a first deploy must answer


def test_tracing_is_the_functions_and_grants_xray_only_when_active(
    template: dict[str, Any],
) -> None:
    function = template["Resources"]["TriggerFunction"]["Properties"]
    assert function["Tracing"] == {"Ref": "Tracing"}
    assert function_environment(template)["TRACING"] == {"Ref": "Tracing"}
    assert template["Parameters"]["Tracing"]["AllowedValues"] == ["Active", "PassThrough"]
    statements = template["Resources"]["TriggerFunctionRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    [traces] = [
        s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "TracingActive"
    ]
    assert traces[1]["Action"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]


def roles(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}


def test_every_role_of_the_stack_carries_the_permissions_boundary(
    template: dict[str, Any],
) -> None:
    """The deploy role may create roles only with the boundary (docs/deployer-policy.json): every
    role the template makes, SAM's included, carries it, so whatever its own policies say, it
    can do no more than docs/deployer-boundary.json allows."""
    boundary = {"Ref": "PermissionsBoundaryArn"}
    made = roles(translated(template)["Resources"])
    assert set(made) >= {"TriggerFunctionRole", "RebalanceScheduleRole"}
    assert set(made) == set(roles(template["Resources"]))  # SAM adds none today ...
    for name, role in made.items():
        assert role["Properties"].get("PermissionsBoundary") == boundary, name
    # ... and the one it would add for a function without a Role of its own gets it too.
    without = copy.deepcopy(template)
    del without["Resources"]["TriggerFunction"]["Properties"]["Role"]
    del without["Resources"]["TriggerFunctionRole"]
    generated = roles(translated(without)["Resources"])
    assert generated
    for name, role in generated.items():
        assert role["Properties"].get("PermissionsBoundary") == boundary, name


def test_the_boundary_parameter_is_required_and_names_the_boundary_policy(
    template: dict[str, Any],
) -> None:
    """No default: a deploy without it stops before anything changes ("Parameters:
    [PermissionsBoundaryArn] must have values"), instead of creating roles without it."""
    parameter = template["Parameters"]["PermissionsBoundaryArn"]
    assert "Default" not in parameter
    allowed = re.compile(parameter["AllowedPattern"])
    for arn in (
        "arn:aws:iam::123456789012:policy/glider-rebalance-trigger-boundary",
        "arn:aws-us-gov:iam::123456789012:policy/glider-rebalance-trigger-boundary",
    ):
        assert allowed.fullmatch(arn), arn
    for arn in (
        "",
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws:iam::123456789012:policy/AdministratorAccess",
        "arn:aws:iam::123456789012:policy/glider-rebalance-trigger-boundary-v2",
        "arn:aws:iam::123456789012:role/glider-rebalance-trigger-boundary",
    ):
        assert not allowed.fullmatch(arn), arn


BASE_URLS_ACCEPTED = [
    "https://api.glider.fi",
    "https://staging-api.glider.fi/",
    # A Glider emulator on this machine (make up, the deployed-stack test): the key never leaves
    # the host, and on AWS loopback is the function's own sandbox.
    "http://127.0.0.1:8080",
    "http://localhost:41234",
    "http://127.0.0.1",
]
BASE_URLS_REFUSED = [
    "http://api.glider.fi",
    "http://127.0.0.1.nip.io:8080",
    "http://localhost.example.com",
    "http://localhost:8080@evil.example",
    "http://10.0.0.1:8080",
    "http://[::1]:8080",  # loopback too, but the template keeps to the two names it documents
    "ftp://api.glider.fi",
]


def test_the_api_url_is_https_or_plain_http_on_loopback_only(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["GliderApiBaseUrl"]["AllowedPattern"]
    for url in BASE_URLS_ACCEPTED:
        assert re.fullmatch(pattern, url), url
        # What the template lets through, the function accepts at start-up.
        Settings.from_environment(REQUIRED | {"GLIDER_API_BASE_URL": url})
    for url in BASE_URLS_REFUSED:
        assert not re.fullmatch(pattern, url), url
