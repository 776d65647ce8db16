"""template.yaml's alarms against its dashboard and its topic: every alarm (found by its type,
whoever adds it) shows on the operations dashboard, and the notice rules that publish to the
alarm topic are the only EventBridge rules its policy lets in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
ALARM: str = "AWS::CloudWatch::Alarm"
RULE: str = "AWS::Events::Rule"


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    found: dict[str, Any] = loaded["Resources"]
    return found


def dashboard_alarms(resources: dict[str, Any]) -> list[str]:
    """The logical ids of the alarms the dashboard's alarm widgets list (as ${Id.Arn})."""
    body = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]

    def placeholder(match: re.Match[str]) -> str:
        name = match[1]
        # ${Alarm.Arn} sits in a JSON string; any other value (a number somewhere) reads as 0.
        return f"arn-of:{name.removesuffix('.Arn')}" if name.endswith(".Arn") else "0"

    dashboard = json.loads(re.sub(r"\$\{([A-Za-z0-9:.]+)\}", placeholder, body))
    return [
        arn.removeprefix("arn-of:")
        for widget in dashboard["widgets"]
        if widget["type"] == "alarm"
        for arn in widget["properties"]["alarms"]
    ]


def test_the_dashboard_shows_every_alarm_of_the_template_once(resources: dict[str, Any]) -> None:
    alarms = {name for name, resource in resources.items() if resource["Type"] == ALARM}
    shown = dashboard_alarms(resources)

    assert len(alarms) >= 8
    assert sorted(alarms - set(shown)) == [], "alarms missing from OperationsDashboard"
    assert sorted(set(shown) - alarms) == [], "the dashboard lists what is no alarm"
    assert len(shown) == len(set(shown))


def test_each_new_dead_letter_alarms_whichever_way_it_came(resources: dict[str, Any]) -> None:
    alarm = resources["DeadLetterQueueNewLetterAlarm"]["Properties"]
    metrics = {metric["Id"]: metric for metric in alarm["Metrics"]}
    [returned] = [metric for metric in alarm["Metrics"] if metric.get("ReturnData", True)]
    sent = metrics["sent"]["MetricStat"]

    # Sent (the function's letters) and moved in by a redrive policy (not in NumberOfMessagesSent).
    assert sent["Metric"]["MetricName"] == "NumberOfMessagesSent"
    assert metrics["visible"]["MetricStat"]["Metric"]["MetricName"] == (
        "ApproximateNumberOfMessagesVisible"
    )
    assert returned["Expression"] == "FILL(sent, 0) + FILL(moved, 0)"
    # Back to OK after a quiet minute, so that the next letter notifies again.
    assert all(m["MetricStat"]["Period"] == 60 for m in metrics.values() if "MetricStat" in m)
    assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (1, "notBreaching")
    assert "AlarmActions" in alarm
    assert "OKActions" not in alarm


def test_only_the_notice_rules_may_publish_to_the_alarm_topic(resources: dict[str, Any]) -> None:
    notices = {
        name
        for name, resource in resources.items()
        if resource["Type"] == RULE
        and any(
            target["Arn"]
            == {"Fn::If": ["HasAlarmTopicArn", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}
            for target in resource["Properties"]["Targets"]
        )
    }
    statements = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    [events] = [
        statement["Fn::If"][1]
        for statement in statements
        if "Fn::If" in statement and statement["Fn::If"][0] == "NotifyEachFailureOn"
    ]

    assert notices == {
        "RebalanceFailedNoticeRule",
        "RebalanceUnknownNoticeRule",
        "TriggerFailedNoticeRule",
    }
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Action"] == "sns:Publish"
    allowed = events["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sorted(allowed, key=str) == sorted(
        ({"Fn::GetAtt": [name, "Arn"]} for name in notices), key=str
    )


@pytest.mark.parametrize(
    "rule", ["RebalanceFailedNoticeRule", "RebalanceUnknownNoticeRule", "TriggerFailedNoticeRule"]
)
def test_a_notice_names_the_portfolio_and_the_command_to_see_more(
    resources: dict[str, Any], rule: str
) -> None:
    [target] = resources[rule]["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    template = transformer["InputTemplate"]["Fn::Sub"]

    assert transformer["InputPathsMap"]["portfolio"] == "$.detail.portfolioId"
    assert transformer["InputPathsMap"]["reason"] == "$.detail.reason"
    assert "<portfolio>" in template
    assert "<reason>" in template
    assert "glider-trigger history --stack ${AWS::StackName} --portfolio <portfolio>" in template
    # Plain text: EventBridge reads a template with a double quote as JSON.
    assert '"' not in template
    assert set(re.findall(r"<([a-z]+)>", template)) <= set(transformer["InputPathsMap"])
