"""tools/schedules.py against the moto server: add, list, remove and the refusals, with schedules
made as template.yaml makes its own (checked against the template), and an input the function
accepts: parsed by its own contract and invoked on the real handler, it triggers.

moto 5.2.5 implements CreateSchedule, GetSchedule, ListSchedules and DeleteSchedule, but its
CloudFormation cannot create an AWS::Scheduler::Schedule. The stacks here stand a resource moto
can create, with the schedule's name as its physical id (what CloudFormation reports for a
schedule), in for the template's RebalanceSchedule, and create that schedule with Scheduler's API
the way the template does. moto does not validate expressions or time zones (the tool does)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

import tools.schedule_spec
from glider_trigger.domain.models import SourceKind
from glider_trigger.domain.trigger_input import parse
from local.fixtures.delivery import Story
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import REGION, Deployment, MotoServer
from tools.schedules import main

# The standard AWS environment pointed at the moto server (what --stack uses).
pytestmark = pytest.mark.usefixtures("aws_environment")

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
ACCOUNT = "123456789012"
HEADER = ["NAME", "EXPRESSION", "TIME ZONE", "STATE", "WINDOW", "SKIP", "PORTFOLIOS", "NOTE"]
SCHEDULED_TIME = "2026-12-07T08:00:00Z"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


@pytest.fixture
def template_schedule(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml's RebalanceSchedule properties."""
    properties: dict[str, Any] = template["Resources"]["RebalanceSchedule"]["Properties"]
    return properties


def template_input(properties: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """The template's Input (a Fn::Sub) rendered for these ids, as CloudFormation would."""
    text, variables = properties["Target"]["Input"]["Fn::Sub"]
    [(name, join)] = variables.items()
    separator, _ = join["Fn::Join"]
    rendered: dict[str, Any] = json.loads(text.replace("${" + name + "}", separator.join(ids)))
    return rendered


@dataclass
class Stack:
    name: str
    function_arn: str
    dlq_arn: str
    role_arn: str
    own_schedule: str | None

    def unique(self, name: str) -> str:
        """A schedule name of this test's own: the default group is the account's."""
        return f"{name}-{self.name.rsplit('-', 1)[-1]}"


@pytest.fixture
def scheduler(moto_server: MotoServer) -> Any:
    return moto_server.client("scheduler")


@pytest.fixture
def make_stack(
    moto_server: MotoServer, scheduler: Any, template_schedule: dict[str, Any]
) -> Callable[..., Stack]:
    """A stack with template.yaml's outputs (ScheduleRoleArn only when asked: the template lacks
    it) and, when asked, its own schedule, made as the template makes it."""

    def make(*, role_output: bool = True, own_schedule: bool = True) -> Stack:
        name = f"glider-schedules-{uuid.uuid4().hex[:8]}"
        function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}-TriggerFunction-X1"
        own_name = f"{name}-RebalanceSchedule-Q2W3E4" if own_schedule else None
        resources: dict[str, Any] = {
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue"},
            "RebalanceScheduleRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "scheduler.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                },
            },
        }
        if own_name:  # the stand-in: its physical id is the schedule's name
            resources["RebalanceSchedule"] = {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": own_name, "Type": "String", "Value": "stand-in"},
            }
        outputs: dict[str, Any] = {
            "TriggerFunctionArn": {"Value": function_arn},
            "DeadLetterQueueArn": {"Value": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
            "RoleArnForTheTest": {"Value": {"Fn::GetAtt": ["RebalanceScheduleRole", "Arn"]}},
        }
        if role_output:
            outputs["ScheduleRoleArn"] = {"Value": {"Fn::GetAtt": ["RebalanceScheduleRole", "Arn"]}}
        cloudformation = moto_server.client("cloudformation")
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps({"Resources": resources, "Outputs": outputs}),
        )
        found = {
            o["OutputKey"]: o["OutputValue"]
            for o in cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
        }
        stack = Stack(
            name, function_arn, found["DeadLetterQueueArn"], found["RoleArnForTheTest"], own_name
        )
        if own_name:
            target = template_schedule["Target"]
            scheduler.create_schedule(
                Name=own_name,
                ScheduleExpression="rate(1 day)",
                State="ENABLED",
                Description=template_schedule["Description"],
                FlexibleTimeWindow=template_schedule["FlexibleTimeWindow"],
                Target={
                    "Arn": function_arn,
                    "RoleArn": stack.role_arn,
                    "Input": json.dumps(template_input(template_schedule, ["port_daily01"])),
                    "RetryPolicy": target["RetryPolicy"],
                    "DeadLetterConfig": {"Arn": stack.dlq_arn},
                },
            )
        return stack

    return make


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


@dataclass
class Result:
    status: int
    out: str
    err: str

    def rows(self) -> dict[str, list[str]]:
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split() == " ".join(HEADER).split())
        widths = _columns(lines[start])
        rows = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            cells = [line[a:b].strip() for a, b in widths]
            rows[cells[0]] = cells
        return rows


def _columns(header: str) -> list[tuple[int, int | None]]:
    starts = [header.index(name) for name in HEADER]
    return list(zip(starts, [*starts[1:], None], strict=True))


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*argv: str) -> Result:
        status = main(list(argv))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return call


def add(run: Callable[..., Result], stack: Stack, name: str, *extra: str) -> Result:
    return run("add", "--stack", stack.name, "--name", name, *extra)


def scheduled_by_scheduler(schedule: dict[str, Any]) -> dict[str, Any]:
    """The input as Scheduler delivers it for one run: its context attributes filled in."""
    text = schedule["Target"]["Input"]
    text = text.replace("<aws.scheduler.schedule-arn>", schedule["Arn"])
    rendered: dict[str, Any] = json.loads(
        text.replace("<aws.scheduler.scheduled-time>", SCHEDULED_TIME)
    )
    return rendered


# --- add and list ----------------------------------------------------------------------------


def test_add_creates_a_schedule_as_the_template_creates_its_own(
    stack: Stack, scheduler: Any, template_schedule: dict[str, Any], run: Callable[..., Result]
) -> None:
    berlin, hourly_name = stack.unique("weekly-berlin"), stack.unique("hourly")
    weekly = add(
        run, stack, berlin,
        "--expression", "cron(0 9 ? * MON *)", "--time-zone", "Europe/Berlin",
        "--portfolio-ids", "port_abc123,port_def456", "--flexible-window-minutes", "15",
    )  # fmt: skip
    hourly = add(
        run, stack, hourly_name,
        "--expression", "rate(1 hour)", "--portfolio-ids", "port_ghi789",
        "--skip-schedule-validation", "--disabled",
    )  # fmt: skip

    assert (weekly.status, hourly.status) == (0, 0), weekly.err + hourly.err
    assert weekly.out.startswith(
        f"Created arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{berlin}:\n"
    )
    assert weekly.rows()[berlin] == [
        berlin, "cron(0 9 ? * MON *)", "Europe/Berlin", "ENABLED", "15 min",
        "default", "port_abc123,port_def456", "",
    ]  # fmt: skip
    assert hourly.rows()[hourly_name][1:7] == [
        "rate(1 hour)", "UTC", "DISABLED", "off", "true", "port_ghi789",
    ]  # fmt: skip
    created = scheduler.get_schedule(Name=berlin, GroupName="default")
    target = created["Target"]
    # What the template's schedule has: the function, its role, the retry policy, the DLQ ...
    assert target["Arn"] == stack.function_arn
    assert target["RoleArn"] == stack.role_arn
    assert target["RetryPolicy"] == template_schedule["Target"]["RetryPolicy"]
    assert target["DeadLetterConfig"] == {"Arn": stack.dlq_arn}
    # ... and its input, context attributes included, for these ids.
    assert json.loads(target["Input"]) == template_input(
        template_schedule, ["port_abc123", "port_def456"]
    )
    assert created["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert template_schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    hourly_input = json.loads(
        scheduler.get_schedule(Name=hourly_name, GroupName="default")["Target"]["Input"]
    )
    assert hourly_input == {
        **template_input(template_schedule, ["port_ghi789"]),
        "skipScheduleValidation": True,
    }


def test_list_shows_the_stacks_schedules_only(
    stack: Stack, scheduler: Any, run: Callable[..., Result]
) -> None:
    weekly = stack.unique("weekly")
    add(run, stack, weekly, "--expression", "cron(0 9 ? * MON *)", "--portfolio-ids", "a1")
    scheduler.create_schedule(  # another stack's (or anyone's) schedule in the same group
        Name=f"other-{uuid.uuid4().hex[:6]}",
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:other", "RoleArn": "r"},
    )

    result = run("list", "--stack", stack.name)

    assert result.status == 0, result.err
    rows = result.rows()
    assert stack.own_schedule is not None
    assert list(rows) == sorted([stack.own_schedule, weekly])
    assert rows[stack.own_schedule] == [
        stack.own_schedule, "rate(1 day)", "UTC", "ENABLED", "off", "default", "port_daily01",
        "the template's RebalanceSchedule",
    ]  # fmt: skip
    assert rows[weekly][1:7] == ["cron(0 9 ? * MON *)", "UTC", "ENABLED", "off", "default", "a1"]
    assert f"2 schedule(s) of stack {stack.name} in group default (the stack has no " in result.out
    assert "reports no next run time" in result.out


def test_the_input_it_writes_triggers_through_the_function(
    stack: Stack,
    scheduler: Any,
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    run: Callable[..., Result],
) -> None:
    ids, name = "port_abc123,port_def456", stack.unique("now")
    assert add(
        run, stack, name, "--expression", "rate(1 hour)", "--portfolio-ids", ids,
        "--skip-schedule-validation",
    ).status == 0  # fmt: skip
    event = scheduled_by_scheduler(scheduler.get_schedule(Name=name, GroupName="default"))

    # The function's own contract reads it as a schedule run of these ids ...
    parsed = parse(event, default_skip=False, transport=None)
    assert [r.portfolio_id for r in parsed.requests] == ids.split(",")
    assert {r.skip_schedule_validation for r in parsed.requests} == {True}
    assert parsed.source.kind is SourceKind.SCHEDULE
    arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}"
    assert parsed.source.dedupe_key == f"schedule:{arn}@{SCHEDULED_TIME}"
    # ... and the handler triggers them, once however often Scheduler retries that run.
    first = deliver(event)
    retried = deliver(event)

    assert [r["outcome"] for r in first.outcomes] == ["triggered"] * 2, first.outcomes
    assert [r["outcome"] for r in retried.outcomes] == ["already-triggered"] * 2, retried.outcomes
    assert first.answer["deliveryKey"] == retried.answer["deliveryKey"] == parsed.source.dedupe_key
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ids.split(",")
    assert {r.skip_schedule_validation for r in emulator.rebalances} == {True}
    assert deployment.dlq_messages() == []


def test_without_the_role_output_the_role_of_the_templates_schedule_is_used(
    make_stack: Callable[..., Stack], scheduler: Any, run: Callable[..., Result]
) -> None:
    stack = make_stack(role_output=False)

    name = stack.unique("daily")
    result = add(run, stack, name, "--expression", "rate(2 days)", "--portfolio-ids", "a1")

    assert result.status == 0, result.err
    created = scheduler.get_schedule(Name=name, GroupName="default")
    assert created["Target"]["RoleArn"] == stack.role_arn


def test_without_any_role_it_names_the_template_change(
    make_stack: Callable[..., Stack], run: Callable[..., Result]
) -> None:
    stack = make_stack(role_output=False, own_schedule=False)

    name = stack.unique("daily")
    result = add(run, stack, name, "--expression", "rate(1 day)", "--portfolio-ids", "a1")

    assert result.status == 1
    assert "has no schedule role to invoke its function with" in result.err
    assert "add that output (and create the role unconditionally)" in result.err
    assert "ScheduleRoleArn" in result.err


# --- remove ----------------------------------------------------------------------------------


def test_remove_asks_then_deletes(
    stack: Stack, scheduler: Any, monkeypatch: pytest.MonkeyPatch, run: Callable[..., Result]
) -> None:
    hourly, again = stack.unique("hourly"), stack.unique("again")
    add(run, stack, hourly, "--expression", "rate(1 hour)", "--portfolio-ids", "a1,b2")
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda question: next(answers))

    kept = run("remove", "--stack", stack.name, "--name", hourly)
    deleted = run("remove", "--stack", stack.name, "--name", hourly)

    assert (kept.status, kept.out) == (1, "Aborted: nothing deleted.\n")
    assert deleted.status == 0
    assert deleted.out == (
        f"Deleted schedule {hourly} (rate(1 hour), portfolios a1,b2) from group default.\n"
    )
    names = [s["Name"] for s in scheduler.list_schedules(GroupName="default")["Schedules"]]
    assert hourly not in names
    add(run, stack, again, "--expression", "rate(1 hour)", "--portfolio-ids", "a1")
    assert run("remove", "--stack", stack.name, "--name", again, "--yes").status == 0


# --- refusals --------------------------------------------------------------------------------


def test_refusals(stack: Stack, scheduler: Any, run: Callable[..., Result]) -> None:
    assert stack.own_schedule is not None
    weekly = stack.unique("weekly")
    add(run, stack, weekly, "--expression", "cron(0 9 ? * MON *)", "--portfolio-ids", "a1")
    other = f"other-{uuid.uuid4().hex[:6]}"
    scheduler.create_schedule(
        Name=other,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:123456789012:function:other", "RoleArn": "r"},
    )

    again = add(run, stack, weekly, "--expression", "rate(1 hour)", "--portfolio-ids", "b2")
    own = run("remove", "--stack", stack.name, "--name", stack.own_schedule, "--yes")
    foreign = run("remove", "--stack", stack.name, "--name", other, "--yes")
    missing = run("remove", "--stack", stack.name, "--name", "nope", "--yes")
    no_stack = run("list", "--stack", "no-such-stack")

    assert again.status == 1
    assert f"a schedule named {weekly} already exists in group default: not overwriting" in (
        again.err
    )
    kept = scheduler.get_schedule(Name=weekly, GroupName="default")
    assert kept["ScheduleExpression"] == "cron(0 9 ? * MON *)"  # untouched
    assert own.status == 1
    assert "is the template's own schedule (RebalanceSchedule): not deleting it" in own.err
    assert foreign.status == 1
    assert f"{other} is not a schedule of stack {stack.name}: it targets" in foreign.err
    assert missing.status == 1
    assert "no schedule named nope in group default" in missing.err
    assert no_stack.status == 1
    assert "stack no-such-stack: DescribeStacks: ValidationError" in no_stack.err
    names = {s["Name"] for s in scheduler.list_schedules(GroupName="default")["Schedules"]}
    assert {stack.own_schedule, other, weekly} <= names


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--expression", "every hour"], "an expression is rate(N minutes|hours|days), cron("),
        (["--expression", "rate(1 hours)"], "say rate(1 hour): singular for 1, plural above"),
        (["--expression", "rate(0 minutes)"], "a rate must be at least 1"),
        (["--expression", "cron(0 9 * * MON *)"], "exactly one of day-of-month and day-of-week"),
        (["--expression", "cron(0 9 * *)"], "cron() takes six fields"),
        (["--expression", "at(2026-13-01T09:00:00)"], "at(): not a date and time"),
        (["--time-zone", "Mars/Olympus"], "not an IANA time zone"),
        (["--flexible-window-minutes", "1441"], "must be 1 to 1440"),
        (["--portfolio-ids", "a1,../admin"], "portfolio id '../admin' is not 1-128 letters"),
        (["--name", "has space"], "a schedule name is 1-64 letters, digits"),
    ],
)
def test_invalid_options_are_usage_errors(
    stack: Stack, scheduler: Any, run: Callable[..., Result], options: list[str], message: str
) -> None:
    arguments = {
        "--name": stack.unique("bad"),
        "--expression": "rate(1 day)",
        "--portfolio-ids": "a1",
    }
    extra = []
    for option, value in zip(options[::2], options[1::2], strict=True):
        if option in arguments:
            arguments[option] = value
        else:
            extra += [option, value]
    argv = [item for pair in arguments.items() for item in pair]

    result = run("add", "--stack", stack.name, *argv, *extra)

    assert result.status == 2
    assert message in result.err
    names = {s["Name"] for s in scheduler.list_schedules(GroupName="default")["Schedules"]}
    assert stack.unique("bad") not in names


def test_the_tools_constants_are_the_templates(
    template: dict[str, Any], template_schedule: dict[str, Any]
) -> None:
    target = template_schedule["Target"]
    assert target["RetryPolicy"] == tools.schedule_spec.RETRY_POLICY
    assert target["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    # The stack's own group, named by an output the tool reads (see the module docstring).
    assert template_schedule["GroupName"] == {"Ref": "RebalanceScheduleGroup"}
    assert template["Outputs"]["ScheduleGroupName"]["Value"] == {"Ref": "RebalanceScheduleGroup"}
    assert json.loads(tools.schedule_spec.schedule_input(["a1", "b2"], skip=None)) == (
        template_input(template_schedule, ["a1", "b2"])
    )
