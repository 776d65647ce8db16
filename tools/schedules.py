"""List, add and remove EventBridge Scheduler schedules that rebalance portfolios through a
stack's function, created exactly as template.yaml creates its own schedule.

    glider-trigger schedules list --stack NAME
    glider-trigger schedules add --stack NAME --name N --expression EXPR [--time-zone TZ]
                                  --portfolio-ids ID[,ID...] [--skip-schedule-validation]
                                  [--flexible-window-minutes M] [--disabled]
    glider-trigger schedules remove --stack NAME --name N [--yes]

(`make schedules ARGS='list --stack NAME'`.)

A schedule made here is the template's RebalanceSchedule with other values: its target is the
stack's function (output TriggerFunctionArn), invoked with the role of the template's schedule
(output ScheduleRoleArn, else the role RebalanceSchedule uses), the same retry policy (2 retries
within an hour) and dead-letter queue (output DeadLetterQueueArn), and the same input: the ids,
Scheduler's context attributes <aws.scheduler.schedule-arn> and <aws.scheduler.scheduled-time>
(so that Scheduler's retries of one run are one delivery for the function's guard) and, only with
--skip-schedule-validation, skipScheduleValidation (else the stack's default applies, as for the
template's). The flexible time window is off unless --flexible-window-minutes; the time zone is
UTC unless --time-zone.

The schedules are those of the stack's schedule group (output ScheduleGroupName, the template's
RebalanceScheduleGroup, whose schedules alone the schedule role trusts) whose target is the
stack's function. A stack deployed before the group existed has no such output: the tool then
works in the account's `default` group, on the schedules that target this stack's function.
`remove` refuses the template's own schedule (resource RebalanceSchedule: change the stack's
parameters instead) and any schedule that does not target the stack's function.

Region, credentials and endpoint come from the standard AWS environment, as for the other tools.
Nothing here reads the Glider API key.

exit status: 0 done, 1 refused, aborted or an AWS error, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.trigger_input import (
    PORTFOLIO_IDS,
    SCHEDULE_ARN,
    SCHEDULED_TIME,
    SKIP_SCHEDULE_VALIDATION,
    listed_ids,
)
from tools.base import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ToolError,
    UsageError,
    describe,
    one_line,
    parse_args,
    positive_int,
    prog,
    table,
)
from tools.common import (
    Aws,
    aws_for,
    describe_stack,
    error_code,
    outputs_of,
    portfolio_ids,
    stack_resource,
)
from tools.dlq import (
    confirm,
)

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_scheduler.type_defs import (
        CreateScheduleInputTypeDef,
        FlexibleTimeWindowTypeDef,
        GetScheduleOutputTypeDef,
        TargetTypeDef,
    )

PROG: Final = prog("schedules")

DEFAULT_GROUP: Final = "default"
OWN_SCHEDULE: Final = "RebalanceSchedule"  # the template's own schedule (a resource)
# What template.yaml's RebalanceSchedule sets; tests/integration/test_schedules_tool.py checks
# these against the template itself.
RETRY_POLICY: Final = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}
SCHEDULE_ARN_ATTRIBUTE: Final = "<aws.scheduler.schedule-arn>"
SCHEDULED_TIME_ATTRIBUTE: Final = "<aws.scheduler.scheduled-time>"
DESCRIPTION: Final = "Periodic Glider portfolio rebalance (make schedules)."
MAX_WINDOW_MINUTES: Final = 1440  # Scheduler's limit for MaximumWindowInMinutes

NAME_PATTERN: Final = re.compile(r"[0-9A-Za-z_.-]{1,64}")
RATE: Final = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
CRON: Final = re.compile(r"cron\((.+)\)")
AT: Final = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
CRON_FIELD: Final = re.compile(r"[0-9A-Za-z*?,/#-]+")

HEADERS: Final = [
    "NAME",
    "EXPRESSION",
    "TIME ZONE",
    "STATE",
    "WINDOW",
    "SKIP",
    "PORTFOLIOS",
    "NOTE",
]
_AWS_CONFIG: Final = BotoConfig(
    connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4}
)

EXAMPLES = f"""\
examples:
  {PROG} list --stack glider-rebalance-trigger
  {PROG} add --stack glider-rebalance-trigger --name weekly-berlin \\
      --expression 'cron(0 9 ? * MON *)' --time-zone Europe/Berlin --portfolio-ids a,b
  {PROG} add --stack glider-rebalance-trigger --name hourly --expression 'rate(1 hour)' \\
      --portfolio-ids c --flexible-window-minutes 10 --disabled
  {PROG} remove --stack glider-rebalance-trigger --name hourly

Expressions: rate(N minute[s]|hour[s]|day[s]), cron(minutes hours day-of-month month
day-of-week year) with ? in one of the two day fields, at(yyyy-mm-ddThh:mm:ss).
exit status: 0 done, 1 refused, aborted or an AWS error, 2 usage error.
"""


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """What the schedules need from the stack, read from its outputs and resources."""

    name: str
    function_arn: str
    dlq_arn: str | None
    group: str
    own_schedule: str | None  # the physical id (the name) of RebalanceSchedule, if created
    role_arn: str | None  # output ScheduleRoleArn, if the template has it

    @property
    def group_note(self) -> str:
        if self.group == DEFAULT_GROUP:
            return (
                f"group {DEFAULT_GROUP} (the stack has no ScheduleGroupName output), "
                "the schedules that target its function"
            )
        return f"group {self.group}"


def load_stack(aws: Aws, name: str) -> Stack:
    try:
        cloudformation = aws.cloudformation()
    except BotoCoreError as exc:
        raise ToolError(f"stack {name}: {describe(exc)}") from exc
    outputs = outputs_of(describe_stack(cloudformation, name))
    function_arn = outputs.get("TriggerFunctionArn")
    if not function_arn:
        raise ToolError(f"stack {name} has no output TriggerFunctionArn")
    try:
        own = stack_resource(cloudformation, name, OWN_SCHEDULE)
    except ToolError as exc:
        raise ToolError(f"stack {name}: its {OWN_SCHEDULE} resource: {exc}") from exc
    return Stack(
        name=name,
        function_arn=function_arn,
        dlq_arn=outputs.get("DeadLetterQueueArn") or None,
        group=outputs.get("ScheduleGroupName") or DEFAULT_GROUP,
        own_schedule=own,
        role_arn=outputs.get("ScheduleRoleArn") or None,
    )


# --- the schedules ---------------------------------------------------------------------------


class Schedules:
    def __init__(self, client: EventBridgeSchedulerClient, stack: Stack) -> None:
        self.client = client
        self.stack = stack

    def get(self, name: str) -> GetScheduleOutputTypeDef | None:
        try:
            return self.client.get_schedule(Name=name, GroupName=self.stack.group)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise ToolError(f"schedule {name}: {describe(exc)}") from exc
        except BotoCoreError as exc:
            raise ToolError(f"schedule {name}: {describe(exc)}") from exc

    def of_the_stack(self) -> list[GetScheduleOutputTypeDef]:
        """The group's schedules that target the stack's function, each in full."""
        names = []
        try:
            pages = self.client.get_paginator("list_schedules").paginate(GroupName=self.stack.group)
            for page in pages:
                for summary in page.get("Schedules", []):
                    target = summary.get("Target", {}).get("Arn", "")
                    if self.targets_function(target) and summary.get("Name"):
                        names.append(summary["Name"])
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"schedule group {self.stack.group}: {describe(exc)}") from exc
        found = [self.get(name) for name in sorted(names)]
        return [schedule for schedule in found if schedule is not None]

    def targets_function(self, arn: str) -> bool:
        """The stack's function, unqualified or with a version or alias."""
        function = self.stack.function_arn
        return arn == function or arn.startswith(f"{function}:")

    def is_own(self, name: str) -> bool:
        return name == self.stack.own_schedule

    def role_arn(self) -> str:
        """The role Scheduler invokes the function with: the output, else the one the
        template's own schedule uses."""
        if self.stack.role_arn:
            return self.stack.role_arn
        own = self.get(self.stack.own_schedule) if self.stack.own_schedule else None
        role = own.get("Target", {}).get("RoleArn") if own else None
        if role:
            return role
        raise ToolError(
            f"stack {self.stack.name} has no schedule role to invoke its function with: the "
            f"template creates RebalanceScheduleRole only with SchedulePortfolioIds, and has no "
            f"output ScheduleRoleArn. Deploy with SchedulePortfolioIds set, or add that output "
            f"(and create the role unconditionally)"
        )

    def cells(self, schedule: GetScheduleOutputTypeDef) -> list[str]:
        window = schedule.get("FlexibleTimeWindow", {})
        minutes = window.get("MaximumWindowInMinutes")
        ids, skip = input_of(schedule.get("Target", {}).get("Input", ""))
        name = schedule.get("Name", "-")
        return [
            name,
            schedule.get("ScheduleExpression", "-"),
            schedule.get("ScheduleExpressionTimezone") or "UTC",
            schedule.get("State", "-"),
            f"{minutes} min" if window.get("Mode") == "FLEXIBLE" and minutes else "off",
            skip,
            ids,
            f"the template's {OWN_SCHEDULE}" if self.is_own(name) else "",
        ]


def input_of(text: str) -> tuple[str, str]:
    """The ids (comma-separated) and the skipScheduleValidation the input sets ("default"
    when it leaves it to the stack), as the trigger-input contract reads them."""
    try:
        payload: object = json.loads(text)
    except (ValueError, RecursionError):
        return "(unparsable input)", "-"
    ids = ",".join(i if isinstance(i, str) else json.dumps(i) for i in listed_ids(payload))
    skip = payload.get(SKIP_SCHEDULE_VALIDATION) if isinstance(payload, dict) else None
    return ids or "(no ids)", "default" if skip is None else json.dumps(skip)


def schedule_input(ids: Sequence[str], *, skip: bool) -> str:
    """The template's input, with these ids (and the flag only when given)."""
    body: dict[str, object] = {
        PORTFOLIO_IDS: list(ids),
        SCHEDULE_ARN: SCHEDULE_ARN_ATTRIBUTE,
        SCHEDULED_TIME: SCHEDULED_TIME_ATTRIBUTE,
    }
    if skip:
        body[SKIP_SCHEDULE_VALIDATION] = True
    return json.dumps(body)


# --- validation ------------------------------------------------------------------------------


def schedule_name(text: str) -> str:
    if not NAME_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"a schedule name is 1-64 letters, digits, '.', '_' or '-', got {text!r}"
        )
    return text


def expression(text: str) -> str:
    """rate(), cron() or at(), checked for the shape Scheduler accepts."""
    text = text.strip()
    if rate := RATE.fullmatch(text):
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise argparse.ArgumentTypeError(f"a rate must be at least 1, got {text!r}")
        if (value == 1) == unit.endswith("s"):
            right = unit.rstrip("s") if value == 1 else unit + "s"
            raise argparse.ArgumentTypeError(
                f"say rate({value} {right}): singular for 1, plural above, got {text!r}"
            )
        return text
    if cron := CRON.fullmatch(text):
        fields = cron.group(1).split()
        if len(fields) != 6 or not all(CRON_FIELD.fullmatch(f) for f in fields):
            raise argparse.ArgumentTypeError(
                "cron() takes six fields: minutes hours day-of-month month day-of-week year, "
                f"e.g. cron(0 9 ? * MON *); got {text!r}"
            )
        if (fields[2] == "?") == (fields[4] == "?"):
            raise argparse.ArgumentTypeError(
                f"cron(): exactly one of day-of-month and day-of-week must be ?, got {text!r}"
            )
        return text
    if at := AT.fullmatch(text):
        try:
            datetime.fromisoformat(at.group(1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"at(): not a date and time: {text!r}") from None
        return text
    raise argparse.ArgumentTypeError(
        "an expression is rate(N minutes|hours|days), cron(minutes hours day-of-month month "
        f"day-of-week year) or at(yyyy-mm-ddThh:mm:ss), got {text!r}"
    )


def time_zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC): {text!r}"
        ) from None
    return text


# --- commands --------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, schedules: Schedules) -> int:
    found = schedules.of_the_stack()
    stack = schedules.stack
    if not found:
        print(f"No schedules of stack {stack.name} in {stack.group_note}.")
        return EXIT_OK
    for line in table(HEADERS, [schedules.cells(schedule) for schedule in found]):
        print(line)
    print(
        f"\n{len(found)} schedule(s) of stack {stack.name} in {stack.group_note}. "
        "SKIP default: the stack's DefaultSkipScheduleValidation. EventBridge Scheduler reports "
        "no next run time."
    )
    return EXIT_OK


def cmd_add(args: argparse.Namespace, schedules: Schedules) -> int:
    stack = schedules.stack
    ids = portfolio_ids(args.portfolio_ids)
    if schedules.get(args.name) is not None:
        raise ToolError(
            f"a schedule named {args.name} already exists in group {stack.group}: not "
            f"overwriting it (choose another name, or remove it first)"
        )
    if stack.dlq_arn is None:
        raise ToolError(f"stack {stack.name} has no output DeadLetterQueueArn")
    target: TargetTypeDef = {
        "Arn": stack.function_arn,
        "RoleArn": schedules.role_arn(),
        "Input": schedule_input(ids, skip=args.skip_schedule_validation),
        "RetryPolicy": {
            "MaximumRetryAttempts": RETRY_POLICY["MaximumRetryAttempts"],
            "MaximumEventAgeInSeconds": RETRY_POLICY["MaximumEventAgeInSeconds"],
        },
        "DeadLetterConfig": {"Arn": stack.dlq_arn},
    }
    window: FlexibleTimeWindowTypeDef = (
        {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": args.flexible_window_minutes}
        if args.flexible_window_minutes
        else {"Mode": "OFF"}
    )
    request: CreateScheduleInputTypeDef = {
        "Name": args.name,
        "GroupName": stack.group,
        "ScheduleExpression": args.expression,
        "FlexibleTimeWindow": window,
        "State": "DISABLED" if args.disabled else "ENABLED",
        "Description": DESCRIPTION,
        "Target": target,
    }
    if args.time_zone:
        request["ScheduleExpressionTimezone"] = args.time_zone
    try:
        created = schedules.client.create_schedule(**request)
    except ClientError as exc:
        if error_code(exc) == "ConflictException":
            raise ToolError(
                f"a schedule named {args.name} already exists in group {stack.group}: not "
                "overwriting it"
            ) from exc
        raise ToolError(f"creating schedule {args.name}: {describe(exc)}") from exc
    except BotoCoreError as exc:
        raise ToolError(f"creating schedule {args.name}: {describe(exc)}") from exc
    print(f"Created {created['ScheduleArn']}:")
    stored = schedules.get(args.name)
    if stored is not None:
        for line in table(HEADERS, [schedules.cells(stored)]):
            print(line)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, schedules: Schedules) -> int:
    stack = schedules.stack
    schedule = schedules.get(args.name)
    if schedule is None:
        raise ToolError(f"no schedule named {args.name} in group {stack.group}")
    if schedules.is_own(args.name):
        raise ToolError(
            f"{args.name} is the template's own schedule ({OWN_SCHEDULE}): not deleting it. "
            "Change the stack's SchedulePortfolioIds, ScheduleExpression or ScheduleState instead"
        )
    target = schedule.get("Target", {}).get("Arn", "")
    if not schedules.targets_function(target):
        raise ToolError(
            f"{args.name} is not a schedule of stack {stack.name}: it targets {target}, not "
            f"{stack.function_arn}"
        )
    ids, _ = input_of(schedule.get("Target", {}).get("Input", ""))
    what = (
        f"schedule {args.name} ({schedule.get('ScheduleExpression', '-')}, portfolios {ids}) "
        f"from group {stack.group}"
    )
    if not args.yes and not confirm(f"Delete {what}?"):
        print("Aborted: nothing deleted.")
        return EXIT_ERROR
    try:
        schedules.client.delete_schedule(Name=args.name, GroupName=stack.group)
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"deleting schedule {args.name}: {describe(exc)}") from exc
    print(f"Deleted {what}.")
    return EXIT_OK


COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Schedules], int]]] = {
    "list": cmd_list,
    "add": cmd_add,
    "remove": cmd_remove,
}


def build_parser() -> argparse.ArgumentParser:
    stack_option = argparse.ArgumentParser(add_help=False)
    stack_option.add_argument(
        "--stack", metavar="NAME", required=True, help="the deployed stack (its outputs)"
    )
    stack_option.add_argument("--region", metavar="REGION", help="AWS region")
    stack_option.add_argument("--profile", metavar="NAME", help="AWS profile")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, add and remove the schedules that rebalance through a stack.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "list", parents=[stack_option], help="the stack's schedules (expression, ids, state)"
    )
    add = commands.add_parser(
        "add", parents=[stack_option], help="a schedule, as the template makes its own"
    )
    add.add_argument(
        "--name", type=schedule_name, required=True, metavar="N", help="a new schedule's name"
    )
    add.add_argument(
        "--expression",
        type=expression,
        required=True,
        metavar="EXPR",
        help="rate(...), cron(...) or at(...) (see below)",
    )
    add.add_argument(
        "--time-zone", type=time_zone, metavar="TZ", help="IANA time zone (default UTC)"
    )
    add.add_argument(
        "--portfolio-ids", required=True, metavar="ID,ID", help="the portfolios each run triggers"
    )
    add.add_argument(
        "--skip-schedule-validation",
        action="store_true",
        help="trigger even without an active schedule on Glider (v1); default: the stack's "
        "DefaultSkipScheduleValidation, at each run",
    )
    add.add_argument(
        "--flexible-window-minutes",
        type=positive_int(MAX_WINDOW_MINUTES),
        metavar="M",
        help="let Scheduler start a run up to M minutes late (default: off, as the template)",
    )
    add.add_argument("--disabled", action="store_true", help="create it DISABLED")
    remove = commands.add_parser("remove", parents=[stack_option], help="delete a schedule")
    remove.add_argument(
        "--name", type=schedule_name, required=True, metavar="N", help="the schedule's name"
    )
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "add":
            portfolio_ids(args.portfolio_ids)  # a usage error before any AWS call
        aws = aws_for(args, config=_AWS_CONFIG)  # make up's stack, or an account
        stack = load_stack(aws, args.stack)
        return COMMANDS[args.command](args, Schedules(aws.scheduler(), stack))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ToolError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
    except (ClientError, BotoCoreError) as exc:
        print(f"{PROG}: error: {describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
