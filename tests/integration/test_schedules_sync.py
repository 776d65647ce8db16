"""`schedules sync` against the moto server: the plan, --yes, a second sync with nothing to do,
--prune, the template's own schedule left alone, a failed step reported, and the file's errors
before any AWS call.

As in test_schedules_tool.py, moto's CloudFormation cannot create Scheduler resources: the stack
here has the template's outputs (its ScheduleGroupName names a group the test creates with
Scheduler's API), and a stand-in resource whose physical id is the name of the template's own
schedule, which the test creates in that group as the template does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.fixtures.stack import REGION, MotoServer
from tools.schedule_spec import schedule_input
from tools.schedules import Schedules, main

# The standard AWS environment pointed at the moto server (what --stack uses).
pytestmark = pytest.mark.usefixtures("aws_environment")

ACCOUNT = "123456789012"
PLAN_HEADER = ["ACTION", "NAME", "CHANGES"]


@dataclass
class Stack:
    name: str
    group: str
    function_arn: str
    dlq_arn: str
    role_arn: str
    own_schedule: str


@dataclass
class Result:
    status: int
    out: str
    err: str

    def plan(self) -> dict[str, tuple[str, str]]:
        """NAME: (ACTION, CHANGES) from the plan table."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split() == PLAN_HEADER)
        changes_at = lines[start].index("CHANGES")
        rows = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            action, name = line[:changes_at].split()
            rows[name] = (action, line[changes_at:].strip())
        return rows


@pytest.fixture
def scheduler(moto_server: MotoServer) -> Any:
    return moto_server.client("scheduler")


@pytest.fixture
def stack(moto_server: MotoServer, scheduler: Any) -> Stack:
    """A stack with the template's outputs, its own group and its own schedule in it."""
    name = f"glider-sync-{uuid.uuid4().hex[:8]}"
    group = f"{name}-group"
    own = f"{name}-RebalanceSchedule-Q2W3E4"
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}-TriggerFunction-X1"
    scheduler.create_schedule_group(Name=group)
    template = {
        "Resources": {
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue"},
            "RebalanceSchedule": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": own, "Type": "String", "Value": "stand-in"},
            },
        },
        "Outputs": {
            "TriggerFunctionArn": {"Value": function_arn},
            "DeadLetterQueueArn": {"Value": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
            "ScheduleGroupName": {"Value": group},
            "ScheduleRoleArn": {"Value": f"arn:aws:iam::{ACCOUNT}:role/{name}-schedule"},
        },
    }
    cloudformation = moto_server.client("cloudformation")
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    }
    made = Stack(
        name, group, function_arn, outputs["DeadLetterQueueArn"], outputs["ScheduleRoleArn"], own
    )
    scheduler.create_schedule(
        Name=own,
        GroupName=group,
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": function_arn,
            "RoleArn": made.role_arn,
            "Input": schedule_input(["port_own1"], skip=None),
            "DeadLetterConfig": {"Arn": made.dlq_arn},
        },
    )
    return made


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*argv: str) -> Result:
        status = main(list(argv))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return call


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], str]:
    def file(text: str) -> str:
        path = tmp_path / f"schedules-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return file


FILE = """
schedules:
  - name: daily-europe
    expression: cron(0 9 * * ? *)
    timezone: Europe/Zurich
    portfolioIds: [port_a, port_b]
    skipScheduleValidation: false
  - name: hourly
    expression: rate(1 hour)
    portfolioIds: [port_c]
    enabled: false
    flexibleWindowMinutes: 10
"""


def names_in(scheduler: Any, stack: Stack) -> set[str]:
    return {s["Name"] for s in scheduler.list_schedules(GroupName=stack.group)["Schedules"]}


def test_sync_plans_applies_then_has_nothing_to_do(
    stack: Stack, scheduler: Any, run: Callable[..., Result], write: Callable[[str], str]
) -> None:
    path = write(FILE)
    sync = ("sync", "--stack", stack.name, "--file", path)

    planned = run(*sync)

    assert planned.status == 0, planned.err
    rows = planned.plan()
    assert rows["daily-europe"] == (
        "create",
        "expression=cron(0 9 * * ? *); timezone=Europe/Zurich; portfolioIds=port_a,port_b; "
        "skipScheduleValidation=false; enabled=true; flexibleWindowMinutes=0",
    )
    assert rows["hourly"][0] == "create"
    assert rows[stack.own_schedule][0] == "stack"
    assert "managed by the stack" in rows[stack.own_schedule][1]
    assert "2 to create, 0 to update, 0 to delete" in planned.out
    assert "run again with --yes to apply" in planned.out
    assert names_in(scheduler, stack) == {stack.own_schedule}  # a plan changes nothing

    applied = run(*sync, "--yes")

    assert applied.status == 0, applied.err
    assert "created daily-europe" in applied.out
    assert f"Applied: group {stack.group} matches {path}." in applied.out
    made = scheduler.get_schedule(Name="daily-europe", GroupName=stack.group)
    assert made["ScheduleExpression"] == "cron(0 9 * * ? *)"
    assert made["ScheduleExpressionTimezone"] == "Europe/Zurich"
    assert made["State"] == "ENABLED"
    assert made["Target"]["Arn"] == stack.function_arn
    assert made["Target"]["RoleArn"] == stack.role_arn
    assert made["Target"]["DeadLetterConfig"] == {"Arn": stack.dlq_arn}
    assert json.loads(made["Target"]["Input"]) == json.loads(
        schedule_input(["port_a", "port_b"], skip=False)
    )
    hourly = scheduler.get_schedule(Name="hourly", GroupName=stack.group)
    assert hourly["State"] == "DISABLED"
    assert hourly["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10}

    again = run(*sync, "--yes")

    assert again.status == 0, again.err
    assert {action for action, _ in again.plan().values()} == {"unchanged", "stack"}
    assert "Nothing to do." in again.out


def test_a_changed_file_updates_and_prune_deletes_what_it_no_longer_names(
    stack: Stack, scheduler: Any, run: Callable[..., Result], write: Callable[[str], str]
) -> None:
    assert run("sync", "--stack", stack.name, "--file", write(FILE), "--yes").status == 0
    changed = write(
        "schedules:\n"
        "  - name: daily-europe\n"
        "    expression: cron(0 10 * * ? *)\n"
        "    timezone: Europe/Zurich\n"
        "    portfolioIds: [port_b, port_a, port_d]\n"
    )
    sync = ("sync", "--stack", stack.name, "--file", changed)

    kept = run(*sync, "--yes")
    after_kept = names_in(scheduler, stack)
    pruned_plan = run(*sync, "--prune", "--json")
    pruned = run(*sync, "--prune", "--yes")

    assert kept.status == 0, kept.err
    assert kept.plan()["daily-europe"] == (
        "update",
        "expression: cron(0 9 * * ? *) -> cron(0 10 * * ? *); portfolioIds: port_a,port_b -> "
        "port_a,port_b,port_d; skipScheduleValidation: false -> default",
    )
    assert kept.plan()["hourly"] == ("keep", "not in the file: kept (--prune deletes it)")
    assert "hourly" in after_kept
    updated = scheduler.get_schedule(Name="daily-europe", GroupName=stack.group)
    assert updated["ScheduleExpression"] == "cron(0 10 * * ? *)"
    assert json.loads(updated["Target"]["Input"])["portfolioIds"] == ["port_b", "port_a", "port_d"]
    # --json: the plan, as data.
    document = json.loads(pruned_plan.out)
    assert document["applied"] is False
    assert {(s["action"], s["name"]) for s in document["steps"]} == {
        ("unchanged", "daily-europe"),
        ("delete", "hourly"),
        ("stack", stack.own_schedule),
    }
    assert pruned.status == 0, pruned.err
    assert "deleted hourly" in pruned.out
    assert names_in(scheduler, stack) == {"daily-europe", stack.own_schedule}


def test_a_wrong_target_is_an_update(
    stack: Stack, scheduler: Any, run: Callable[..., Result], write: Callable[[str], str]
) -> None:
    path = write(FILE)
    assert run("sync", "--stack", stack.name, "--file", path, "--yes").status == 0
    hourly = scheduler.get_schedule(Name="hourly", GroupName=stack.group)
    scheduler.update_schedule(
        Name="hourly",
        GroupName=stack.group,
        ScheduleExpression=hourly["ScheduleExpression"],
        FlexibleTimeWindow=hourly["FlexibleTimeWindow"],
        State=hourly["State"],
        Target={**hourly["Target"], "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/someone-else"},
    )

    fixed = run("sync", "--stack", stack.name, "--file", path, "--yes")

    assert fixed.status == 0, fixed.err
    assert fixed.plan()["hourly"] == (
        "update",
        f"role: arn:aws:iam::{ACCOUNT}:role/someone-else -> {stack.role_arn}",
    )
    restored = scheduler.get_schedule(Name="hourly", GroupName=stack.group)
    assert restored["Target"]["RoleArn"] == stack.role_arn


def test_a_failed_step_is_named_and_the_others_still_run(
    stack: Stack,
    scheduler: Any,
    run: Callable[..., Result],
    write: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(FILE)
    # Another writer makes daily-europe between the plan's reads and its create.
    real_get = Schedules.for_sync

    def racing(self: Any, names: Any) -> Any:
        found = real_get(self, names)
        scheduler.create_schedule(
            Name="daily-europe",
            GroupName=stack.group,
            ScheduleExpression="rate(5 minutes)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": stack.function_arn, "RoleArn": stack.role_arn},
        )
        return found

    monkeypatch.setattr(Schedules, "for_sync", racing)

    result = run("sync", "--stack", stack.name, "--file", path, "--yes")

    assert result.status == 1
    assert "FAILED create daily-europe: CreateSchedule: ConflictException" in result.out
    assert "created hourly" in result.out
    assert "1 step(s) failed: daily-europe; the others were applied." in result.out
    assert "hourly" in names_in(scheduler, stack)


def test_file_errors_exit_2_before_any_aws_call(
    run: Callable[..., Result], write: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: no call made
    path = write("schedules:\n  - {name: a, expression: rate(1 days), portfolioIds: [x]}\n  - 3\n")

    result = run("sync", "--stack", "any-stack", "--file", path)

    assert result.status == 2
    assert result.err.splitlines() == [
        f"glider-trigger schedules: error: {path}:a:expression: say rate(1 day): singular for 1,"
        " plural above, got 'rate(1 days)'",
        f"glider-trigger schedules: error: {path}:#2: a schedule is a mapping of name, "
        "expression, timezone, portfolioIds, skipScheduleValidation, enabled, "
        "flexibleWindowMinutes",
        f"glider-trigger schedules: 2 error(s) in {path}: nothing changed",
    ]


def test_a_file_naming_the_templates_own_schedule_is_refused(
    stack: Stack, scheduler: Any, run: Callable[..., Result], write: Callable[[str], str]
) -> None:
    path = write(
        f"schedules:\n  - {{name: {stack.own_schedule}, expression: rate(2 days), "
        "portfolioIds: [x]}\n"
    )

    result = run("sync", "--stack", stack.name, "--file", path, "--yes")

    assert result.status == 2
    assert f"{path}:{stack.own_schedule}:name: is the template's own schedule" in result.err
    own = scheduler.get_schedule(Name=stack.own_schedule, GroupName=stack.group)
    assert own["ScheduleExpression"] == "rate(1 day)"


def test_list_json(stack: Stack, run: Callable[..., Result], write: Callable[[str], str]) -> None:
    assert run("sync", "--stack", stack.name, "--file", write(FILE), "--yes").status == 0

    result = run("list", "--stack", stack.name, "--json")

    assert result.status == 0, result.err
    document = json.loads(result.out)
    rows = {row["name"]: row for row in document["schedules"]}
    assert document["group"] == stack.group
    assert rows["daily-europe"] == {
        "name": "daily-europe",
        "expression": "cron(0 9 * * ? *)",
        "timezone": "Europe/Zurich",
        "enabled": True,
        "flexibleWindowMinutes": 0,
        "skipScheduleValidation": "false",
        "portfolioIds": ["port_a", "port_b"],
        "target": stack.function_arn,
        "note": "",
    }
    assert rows[stack.own_schedule]["note"] == "the template's RebalanceSchedule"


def test_without_the_group_output_it_syncs_the_stacks_schedules_in_the_default_group(
    moto_server: MotoServer,
    scheduler: Any,
    run: Callable[..., Result],
    write: Callable[[str], str],
) -> None:
    """A stack deployed before its group existed: the account's default group, the schedules
    that target its function; another's schedule there is neither pruned nor taken over."""
    name = f"glider-old-{uuid.uuid4().hex[:8]}"
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}-TriggerFunction-X1"
    template = {
        "Resources": {"DeadLetterQueue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "TriggerFunctionArn": {"Value": function_arn},
            "DeadLetterQueueArn": {"Value": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
            "ScheduleRoleArn": {"Value": f"arn:aws:iam::{ACCOUNT}:role/{name}-schedule"},
        },
    }
    moto_server.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )
    mine, others = f"{name}-daily", f"{name}-someone-elses"
    scheduler.create_schedule(
        Name=others,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:other", "RoleArn": "r"},
    )
    entry = "  - name: {}\n    expression: rate(1 day)\n    portfolioIds: [port_x]\n"

    synced = run("sync", "--stack", name, "--file", write("schedules:\n" + entry.format(mine)),
                 "--prune", "--yes")  # fmt: skip
    taken = run("sync", "--stack", name, "--file", write("schedules:\n" + entry.format(others)),
                "--yes")  # fmt: skip

    assert synced.status == 0, synced.err
    # Only its own schedule is in the plan: the other is neither kept nor pruned.
    assert {row: action for row, (action, _) in synced.plan().items()} == {mine: "create"}
    made = scheduler.get_schedule(Name=mine, GroupName="default")
    assert made["Target"]["Arn"] == function_arn
    assert taken.status == 1
    assert f"schedule {others} in group default targets arn:aws:lambda:" in taken.err
    assert "not taking it over" in taken.err
    kept = scheduler.get_schedule(Name=others, GroupName="default")
    assert kept["ScheduleExpression"] == "rate(5 minutes)"
    scheduler.delete_schedule(Name=mine, GroupName="default")
    scheduler.delete_schedule(Name=others, GroupName="default")
