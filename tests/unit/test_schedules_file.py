"""tools/schedule_plan.py without AWS: the schedules file read and checked (every problem named
file:schedule:field, all at once), the plan from the file and the group's schedules as
GetSchedule returns them, and the template's ScheduleTimezone parameter."""

from __future__ import annotations

import json
import re
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from tools.schedule_plan import (
    Action,
    Change,
    Desired,
    FileErrors,
    Target,
    changes_cell,
    load_file,
    parse_schedules,
    plan,
    plan_json,
)
from tools.schedule_spec import schedule_input

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "schedules.example.yaml"
FILE = "s.yaml"
TARGET = Target(
    function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
    role_arn="arn:aws:iam::123456789012:role/sched",
    dlq_arn="arn:aws:sqs:us-east-1:123456789012:dlq",
)
OWN = "stack-RebalanceSchedule-X1"


def errors_of(text: str) -> list[str]:
    with pytest.raises(FileErrors) as raised:
        parse_schedules(text, FILE)
    return raised.value.errors


# --- the file --------------------------------------------------------------------------------


def test_the_example_file_reads_as_the_issue_declares_it() -> None:
    schedules = load_file(EXAMPLE)

    assert schedules[0] == Desired(
        name="daily-europe",
        expression="cron(0 9 * * ? *)",
        timezone="Europe/Zurich",
        portfolio_ids=("port_a", "port_b"),
        skip_schedule_validation=False,
        enabled=True,
        flexible_window_minutes=0,
    )
    assert schedules[1] == Desired(
        name="hourly-us", expression="rate(1 hour)", portfolio_ids=("port_c",)
    )
    assert schedules[1].timezone == "UTC"
    assert schedules[1].skip_schedule_validation is None  # the stack's default applies


def test_an_empty_list_declares_no_schedule() -> None:
    assert parse_schedules("schedules: []\n", FILE) == []


def test_every_problem_is_reported_at_once_naming_file_schedule_and_field() -> None:
    text = """
schedules:
  - name: daily
    expression: cron(0 9 * * MON *)
    timezone: Mars/Olympus
    portfolioIds: [port_a, "../admin", port_a, 12345]
    skipScheduleValidation: "no"
    enabled: 1
    flexibleWindowMinutes: 1441
    timeZone: UTC
  - expression: rate(1 hours)
    portfolioIds: []
  - name: has space
    expression: rate(1 day)
    portfolioIds: [a]
  - just a string
"""
    errors = errors_of(text)

    assert errors == [
        "s.yaml:daily:timeZone: unknown field (did you mean timezone?)",
        "s.yaml:daily:expression: cron(): exactly one of day-of-month and day-of-week must be ?, "
        "got 'cron(0 9 * * MON *)'",
        "s.yaml:daily:timezone: not an IANA time zone (e.g. Europe/Berlin, America/New_York, "
        "UTC): 'Mars/Olympus'",
        "s.yaml:daily:skipScheduleValidation: must be true or false, got str 'no'",
        "s.yaml:daily:enabled: must be true or false, got int 1",
        "s.yaml:daily:flexibleWindowMinutes: must be 0 (off) to 1440, got 1441",
        "s.yaml:daily:portfolioIds: portfolio id '../admin' is not 1-128 letters, digits, '_' "
        "or '-'",
        "s.yaml:daily:portfolioIds: 'port_a' is listed twice",
        "s.yaml:daily:portfolioIds: portfolio id must be a string, got int (quote it)",
        "s.yaml:#2:name: missing (required)",
        "s.yaml:#2:expression: say rate(1 hour): singular for 1, plural above, got 'rate(1 hours)'",
        "s.yaml:#2:portfolioIds: names no portfolio",
        "s.yaml:has space:name: a schedule name is 1-64 letters, digits, '.', '_' or '-', got "
        "'has space'",
        "s.yaml:#4: a schedule is a mapping of name, expression, timezone, portfolioIds, "
        "skipScheduleValidation, enabled, flexibleWindowMinutes",
    ]


def test_a_name_given_twice_is_refused() -> None:
    text = """
schedules:
  - {name: daily, expression: rate(1 day), portfolioIds: [a]}
  - {name: other, expression: rate(1 day), portfolioIds: [b]}
  - {name: daily, expression: rate(2 days), portfolioIds: [c]}
"""
    assert errors_of(text) == ["s.yaml:daily:name: named twice (schedules #1 and #3)"]


def test_a_key_given_twice_is_refused_not_overwritten() -> None:
    text = "schedules:\n  - name: a\n    expression: rate(1 day)\n    expression: rate(2 days)\n"

    [error] = errors_of(text)

    assert error.startswith("s.yaml: not valid YAML: ")
    assert "the key 'expression' is given twice" in error
    assert "line 4" in error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "s.yaml: expected a mapping with `schedules:` (a list of schedules)"),
        ("- a\n", "s.yaml: expected a mapping with `schedules:` (a list of schedules)"),
        ("schedules: {a: 1}\n", "s.yaml:schedules: must be a list (`[]` for none)"),
        ("schedules: [\n", "s.yaml: not valid YAML: "),
        ("schedules: !!python/object:os.system x\n", "s.yaml: not valid YAML: "),
    ],
)
def test_a_file_that_is_not_a_list_of_schedules(text: str, message: str) -> None:
    [error] = errors_of(text)

    assert error.startswith(message)


def test_an_unknown_top_level_key_is_named() -> None:
    assert errors_of("schedules: []\nschedule: []\n") == ["s.yaml:schedule: unknown top-level key"]


def test_an_input_over_schedulers_8_kb_is_refused() -> None:
    ids = [f"port_{n:0100d}" for n in range(80)]  # 80 ids of 105 characters: over 8192
    text = json.dumps(
        {"schedules": [{"name": "big", "expression": "rate(1 day)", "portfolioIds": ids}]}
    )

    [error] = errors_of(text)

    assert error.startswith("s.yaml:big:portfolioIds: the schedule's input would be ")
    assert "Scheduler takes at most 8192: split the ids across schedules" in error
    assert parse_schedules(
        json.dumps(
            {"schedules": [{"name": "fits", "expression": "rate(1 day)", "portfolioIds": ids[:70]}]}
        ),
        FILE,
    )


def test_an_unreadable_file_is_named() -> None:
    with pytest.raises(FileErrors) as raised:
        load_file(Path("/nonexistent/schedules.yaml"), "schedules.yaml")

    [error] = raised.value.errors
    assert error.startswith("schedules.yaml: cannot read it: ")


# --- the plan --------------------------------------------------------------------------------


def live(desired: Desired, target: Target = TARGET, **overrides: Any) -> dict[str, Any]:
    """A schedule as GetSchedule returns one that sync (or the template) made."""
    window = (
        {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": desired.flexible_window_minutes}
        if desired.flexible_window_minutes
        else {"Mode": "OFF"}
    )
    schedule: dict[str, Any] = {
        "Name": desired.name,
        "GroupName": "g",
        "ScheduleExpression": desired.expression,
        "ScheduleExpressionTimezone": desired.timezone,
        "State": "ENABLED" if desired.enabled else "DISABLED",
        "FlexibleTimeWindow": window,
        "Target": {
            "Arn": target.function_arn,
            "RoleArn": target.role_arn,
            "Input": desired.input,
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
            "DeadLetterConfig": {"Arn": target.dlq_arn},
        },
    }
    for key, value in overrides.items():
        if key in schedule["Target"]:
            schedule["Target"][key] = value
        else:
            schedule[key] = value
    return schedule


DAILY = Desired("daily", "cron(0 9 * * ? *)", "Europe/Zurich", ("a", "b"))
HOURLY = Desired("hourly", "rate(1 hour)", portfolio_ids=("c",))


def planned(desired: list[Desired], found: list[dict[str, Any]], *, prune: bool = False) -> Any:
    return plan(
        desired,
        {s["Name"]: s for s in found},
        target=TARGET,
        own=OWN,
        prune=prune,
        file=FILE,
    )


def test_a_new_file_creates_each_schedule_with_its_fields() -> None:
    result = planned([DAILY, HOURLY], [])

    assert [(s.action, s.name) for s in result.steps] == [
        (Action.CREATE, "daily"),
        (Action.CREATE, "hourly"),
    ]
    assert changes_cell(result.steps[0]) == (
        "expression=cron(0 9 * * ? *); timezone=Europe/Zurich; portfolioIds=a,b; enabled=true; "
        "flexibleWindowMinutes=0"
    )
    assert not result.nothing_to_do


def test_what_matches_is_unchanged_and_ids_compare_as_a_set() -> None:
    reordered = Desired(DAILY.name, DAILY.expression, DAILY.timezone, ("b", "a"))

    result = planned([reordered, HOURLY], [live(DAILY), live(HOURLY)])

    assert [s.action for s in result.steps] == [Action.UNCHANGED, Action.UNCHANGED]
    assert result.nothing_to_do


@pytest.mark.parametrize(
    ("changed", "field", "before", "after"),
    [
        ({"ScheduleExpression": "rate(1 day)"}, "expression", "rate(1 day)", "cron(0 9 * * ? *)"),
        ({"ScheduleExpressionTimezone": "UTC"}, "timezone", "UTC", "Europe/Zurich"),
        ({"State": "DISABLED"}, "enabled", False, True),
        (
            {"FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}},
            "flexibleWindowMinutes",
            5,
            0,
        ),
        ({"Input": schedule_input(["a", "z"], skip=None)}, "portfolioIds", ["a", "z"], ["a", "b"]),
        ({"Input": schedule_input(["a", "b"], skip=True)}, "skipScheduleValidation", True, None),
        (
            {"Arn": TARGET.function_arn + ":live"},
            "target",
            TARGET.function_arn + ":live",
            TARGET.function_arn,
        ),
        (
            {"RoleArn": "arn:aws:iam::1:role/other"},
            "role",
            "arn:aws:iam::1:role/other",
            TARGET.role_arn,
        ),
        ({"DeadLetterConfig": {}}, "deadLetterQueue", None, TARGET.dlq_arn),
        (
            {"RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 3600}},
            "retryPolicy",
            {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 3600},
            {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        ),
        (
            {"Input": json.dumps({"portfolioIds": ["a", "b"]})},
            "input",
            "another shape",
            "the template's",
        ),
    ],
)
def test_each_difference_is_an_update_naming_its_field(
    changed: dict[str, Any], field: str, before: object, after: object
) -> None:
    result = planned([DAILY], [live(DAILY, **changed)])

    [step] = result.steps
    assert step.action is Action.UPDATE
    assert step.changes == (Change(field, before, after),)


def test_an_update_shows_before_and_after() -> None:
    result = planned([DAILY], [live(DAILY, ScheduleExpression="rate(1 day)", State="DISABLED")])

    assert changes_cell(result.steps[0]) == (
        "expression: rate(1 day) -> cron(0 9 * * ? *); enabled: false -> true"
    )


def test_schedules_the_file_does_not_name_are_kept_unless_pruned() -> None:
    extra = live(HOURLY)
    own = live(Desired(OWN, "rate(1 day)", portfolio_ids=("p",)))

    kept = planned([DAILY], [live(DAILY), extra, own])
    pruned = planned([DAILY], [live(DAILY), extra, own], prune=True)

    assert [(s.action, s.name) for s in kept.steps] == [
        (Action.UNCHANGED, "daily"),
        (Action.KEEP, "hourly"),
        (Action.STACK, OWN),
    ]
    assert kept.nothing_to_do
    assert changes_cell(kept.steps[1]) == "not in the file: kept (--prune deletes it)"
    assert changes_cell(kept.steps[2]).startswith("managed by the stack")
    # --prune deletes the others, never the template's own.
    assert [(s.action, s.name) for s in pruned.steps] == [
        (Action.UNCHANGED, "daily"),
        (Action.DELETE, "hourly"),
        (Action.STACK, OWN),
    ]
    assert changes_cell(pruned.steps[1]) == "expression=rate(1 hour); timezone=UTC; portfolioIds=c"
    assert plan_json(pruned.steps)[1] == {
        "action": "delete",
        "name": "hourly",
        "changes": [
            {"field": "expression", "from": "rate(1 hour)", "to": None},
            {"field": "timezone", "from": "UTC", "to": None},
            {"field": "portfolioIds", "from": ["c"], "to": None},
        ],
    }


def test_a_file_that_names_the_templates_own_schedule_is_refused() -> None:
    with pytest.raises(FileErrors) as raised:
        planned([Desired(OWN, "rate(1 day)", portfolio_ids=("p",))], [])

    [error] = raised.value.errors
    assert error.startswith(f"s.yaml:{OWN}:name: is the template's own schedule")
    assert "ScheduleTimezone" in error


# --- the template's own schedule -------------------------------------------------------------


def test_the_templates_schedule_takes_a_time_zone() -> None:
    template: dict[str, Any] = cfn_yaml.load(str(REPO / "template.yaml"))
    parameter = template["Parameters"]["ScheduleTimezone"]
    schedule = template["Resources"]["RebalanceSchedule"]["Properties"]

    assert schedule["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert parameter["Default"] == "UTC"
    allowed = re.compile(parameter["AllowedPattern"])
    assert [z for z in zoneinfo.available_timezones() if not allowed.match(z)] == []
    for wrong in ("", "Europe/Zurich; rm", "Europe Zurich", "/Zurich", "a/b/c/d"):
        assert not allowed.match(wrong), wrong
