"""The pure parts of `glider-trigger pause`, `resume` and `status`: what the pause record keeps
across two pauses, what resume enables, the whole schedule UpdateSchedule is given, the
retention warning and alarm, and what status prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cfnlint.decode import cfn_yaml

from tools.base import ToolError
from tools.pause import (
    Kind,
    Pause,
    State,
    Switch,
    Target,
    item_of,
    loss_moment,
    merged_record,
    pause_from_item,
    retention_warning,
    rule_of,
    whole_schedule,
)
from tools.status import Report, lines, next_run_cell

if TYPE_CHECKING:
    from mypy_boto3_scheduler.type_defs import GetScheduleOutputTypeDef

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
DAY = 86400
RETENTION = 4 * DAY

OWN = Switch(Kind.SCHEDULE, "own", "group", State.ENABLED)
OFF = Switch(Kind.SCHEDULE, "off", "group", State.DISABLED)
RULE = Switch(Kind.RULE, "rule", "bus", State.ENABLED)
MAPPING = Switch(Kind.MAPPING, "uuid", "arn:aws:sqs:eu-west-1:1:work", State.ENABLED)


def test_the_first_pause_records_every_switch_and_resume_enables_only_what_was_enabled() -> None:
    record = merged_record(None, [OWN, OFF, RULE, MAPPING], reason="why", by="me", now=NOW)

    assert (record.reason, record.paused_at, record.paused_by) == (
        "why",
        "2026-12-07 18:00:00Z",
        "me",
    )
    assert record.to_enable() == [OWN, RULE, MAPPING]


def test_a_second_pause_keeps_the_first_and_adds_a_schedule_added_since() -> None:
    first = merged_record(None, [OWN, OFF, RULE, MAPPING], reason="why", by="me", now=NOW)
    # Now everything is disabled (the first pause did it), and a schedule was added, enabled.
    added = Switch(Kind.SCHEDULE, "added", "group", State.ENABLED)
    now = [Switch(s.kind, s.name, s.scope, State.DISABLED) for s in (OWN, OFF, RULE, MAPPING)] + [
        added
    ]

    second = merged_record(first, now, reason="again", by="you", now=NOW + timedelta(hours=1))

    assert (second.reason, second.paused_by, second.since) == ("why", "me", NOW)
    assert second.to_enable() == [OWN, RULE, MAPPING, added]


def test_the_record_survives_its_trip_through_dynamodb() -> None:
    record = merged_record(None, [OWN, OFF, RULE, MAPPING], reason="why", by="me", now=NOW)

    assert pause_from_item(item_of(record)) == record
    assert item_of(record)["id"] == {"S": "glider-rebalance-trigger#pause"}
    assert "expiration" not in item_of(record)  # the table's TTL must never delete it


def test_a_record_pause_did_not_write_is_named() -> None:
    with pytest.raises(ToolError, match="glider-rebalance-trigger#pause"):
        pause_from_item({"id": {"S": "glider-rebalance-trigger#pause"}, "reason": {"S": "x"}})


@pytest.mark.parametrize(
    ("physical_id", "expected"),
    [
        ("upstream|stack-rule", ("upstream", "stack-rule")),  # CloudFormation's, custom bus
        ("stack-rule", ("from-parameter", "stack-rule")),
        (None, None),  # the template left the rule out
    ],
)
def test_the_rule_is_found_on_its_bus(
    physical_id: str | None, expected: tuple[str, str] | None
) -> None:
    assert rule_of(physical_id, {"EventBusName": "from-parameter"}) == expected


def test_updating_a_schedules_state_sends_the_whole_schedule_back() -> None:
    schedule: GetScheduleOutputTypeDef = {
        "Name": "weekly",
        "GroupName": "group",
        "ScheduleExpression": "cron(0 9 ? * MON *)",
        "ScheduleExpressionTimezone": "Europe/Zurich",
        "StartDate": NOW,
        "Description": "kept",
        "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10},
        "Target": {"Arn": "arn:function", "RoleArn": "arn:role", "Input": "{}"},
        "State": "ENABLED",
        "ActionAfterCompletion": "NONE",
        "ResponseMetadata": {},  # type: ignore[typeddict-item]
    }

    update = whole_schedule(schedule, State.DISABLED)

    assert update["State"] == "DISABLED"
    kept = {k: v for k, v in schedule.items() if k not in ("State", "ResponseMetadata")}
    assert {k: v for k, v in update.items() if k != "State"} == kept


def test_the_retention_warning_comes_within_a_day_of_the_loss_and_only_while_paused() -> None:
    far = loss_moment(now=NOW, retention=RETENTION, oldest_age=DAY)
    near = loss_moment(now=NOW, retention=RETENTION, oldest_age=RETENTION - 3600)

    assert far == NOW + timedelta(days=3)
    assert retention_warning(now=NOW, loss=far, retention=RETENTION, paused=True) is None
    assert retention_warning(now=NOW, loss=near, retention=RETENTION, paused=False) is None
    warning = retention_warning(now=NOW, loss=near, retention=RETENTION, paused=True)
    assert warning is not None
    assert "lost in 1h" in warning
    assert "resume" in warning


def test_an_unknown_age_counts_from_now() -> None:
    assert loss_moment(now=NOW, retention=RETENTION, oldest_age=None) == NOW + timedelta(days=4)


def test_the_retention_alarm_fires_after_the_backlog_alarm_and_before_messages_are_lost() -> None:
    template: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    resources = template["Resources"]
    alarm = resources["WorkQueueRetentionAgeAlarm"]["Properties"]
    retention = resources["WorkQueue"]["Properties"]["MessageRetentionPeriod"]
    backlog = template["Parameters"]["WorkQueueMaxAgeSeconds"]

    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkQueue", "QueueName"]}}
    ]
    assert backlog["Default"] < alarm["Threshold"] <= retention - DAY
    assert "glider-trigger status" in alarm["AlarmDescription"]["Fn::Sub"]
    assert "glider-trigger resume" in alarm["AlarmDescription"]["Fn::Sub"]


def schedule_of(**fields: Any) -> GetScheduleOutputTypeDef:
    base: dict[str, Any] = {
        "Name": "s",
        "State": "ENABLED",
        "ScheduleExpression": "cron(0 9 * * ? *)",
        "ScheduleExpressionTimezone": "Europe/Zurich",
        "CreationDate": NOW - timedelta(days=1),
    }
    found: GetScheduleOutputTypeDef = {**base, **fields}  # type: ignore[typeddict-item]
    return found


def test_status_shows_a_schedules_next_run_in_its_own_zone() -> None:
    assert next_run_cell(schedule_of(), NOW) == "2026-12-08 09:00 CET"
    assert next_run_cell(schedule_of(State="DISABLED"), NOW) == "- (disabled)"
    assert next_run_cell(schedule_of(ScheduleExpression="at(2026-01-01T00:00:00)"), NOW) == (
        "- (no more runs)"
    )
    assert next_run_cell(schedule_of(ScheduleExpression="cron(0 9 * * * *)"), NOW) == "?"


def test_status_of_a_paused_stack_says_why_warns_and_keeps_the_last_triggers_heading() -> None:
    pause = Pause("Glider maintenance", "2026-12-07 17:00:00Z", "arn:aws:iam::1:user/ops")
    report = Report(
        stack="prod",
        pause=pause,
        switches=[{"kind": Kind.RULE.value, "name": "r", "state": "DISABLED"}],
        schedules=[
            {
                "name": "added",
                "state": "ENABLED",
                "expression": "rate(1 hour)",
                "timeZone": "UTC",
                "nextRun": "?",
            },
        ],
        queues=[{"queue": "work queue", "waiting": 3, "inFlight": 0, "oldestSeconds": None}],
        warning="the oldest waiting message is lost in 5h",
    )

    text = "\n".join(lines(report))

    assert "PAUSED since 2026-12-07 17:00:00Z" in text
    assert "arn:aws:iam::1:user/ops: Glider maintenance" in text
    assert "schedule(s) added ENABLED while paused" in text
    assert "warning: the oldest waiting message is lost in 5h" in text
    assert "unknown" in text  # the oldest message's age
    assert "Last triggers" in text
    assert "TIME  PORTFOLIO  KIND  SOURCE  OUTCOME  REASON  REBALANCE" in text


class FakeEvents:
    """EventBridge's targets of one rule, as the pause's calls change them; RemoveTargets can
    refuse (in its answer, as EventBridge does) while `refuse_removal` is set."""

    def __init__(self, targets: list[dict[str, Any]]) -> None:
        self.targets = list(targets)
        self.refuse_removal = False

    def describe_rule(self, **_: Any) -> dict[str, Any]:
        return {"State": "ENABLED"}

    def list_targets_by_rule(self, **_: Any) -> dict[str, Any]:
        return {"Targets": list(self.targets)}

    def put_targets(self, *, Targets: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        ids = {t["Id"] for t in Targets}
        self.targets = [t for t in self.targets if t["Id"] not in ids] + list(Targets)
        return {"FailedEntryCount": 0}

    def remove_targets(self, *, Ids: list[str], **_: Any) -> dict[str, Any]:
        if self.refuse_removal:
            return {"FailedEntryCount": len(Ids), "FailedEntries": [{"TargetId": i} for i in Ids]}
        self.targets = [t for t in self.targets if t["Id"] not in Ids]
        return {"FailedEntryCount": 0}

    def enable_rule(self, **_: Any) -> None:
        return None


class FakeAws:
    def __init__(self, events: FakeEvents) -> None:
        self._events = events

    def events(self) -> FakeEvents:
        return self._events


FUNCTION_TARGET = {"Id": "Lambda", "Arn": "arn:aws:lambda:eu-west-1:1:function:f"}
WORK_QUEUE_ARN = "arn:aws:sqs:eu-west-1:1:work"


def rule_target(events: FakeEvents) -> Target:
    return Target(
        aws=FakeAws(events),  # type: ignore[arg-type]
        stack="s",
        table="t",
        schedules=None,  # type: ignore[arg-type]
        rule=("bus", "rule"),
        hold_ready=True,
        function="f",
        work_queue_arn=WORK_QUEUE_ARN,
        work_queue_url="https://sqs/1/work",
        outputs={},
    )


def test_a_hold_that_could_not_remove_the_function_target_fails_and_is_not_taken_as_held() -> None:
    events = FakeEvents([FUNCTION_TARGET])
    target = rule_target(events)
    before = Switch(Kind.RULE, "rule", "bus", State.ENABLED, json.dumps([FUNCTION_TARGET]))
    events.refuse_removal = True

    with pytest.raises(ToolError, match="EventBridge refused"):
        target.switch(before, State.DISABLED)

    # The function still gets the rule's events: not held, so the next pause finishes the hold.
    assert target.rule_view("bus", "rule").state is State.ENABLED
    assert not target.rule_view("bus", "rule").held
    events.refuse_removal = False
    target.switch(before, State.DISABLED)
    assert [t["Arn"] for t in events.targets] == [WORK_QUEUE_ARN]
    assert target.rule_view("bus", "rule").state is State.DISABLED

    target.switch(before, State.ENABLED)  # resume: the function's target back, the hold gone
    assert events.targets == [FUNCTION_TARGET]
