"""List, add and remove EventBridge Scheduler schedules that rebalance portfolios through a
stack's function, created exactly as template.yaml creates its own schedule; and sync them from a
YAML file (schedules as code).

    glider-trigger schedules list --stack NAME [--json]
    glider-trigger schedules add --stack NAME --name N --expression EXPR [--time-zone TZ]
                                  --portfolio-ids ID[,ID...] [--skip-schedule-validation]
                                  [--flexible-window-minutes M] [--disabled]
    glider-trigger schedules remove --stack NAME --name N [--yes]
    glider-trigger schedules sync --stack NAME --file F [--prune] [--yes] [--json]

(`make schedules ARGS='list --stack NAME'`.)

A schedule made here is the template's RebalanceSchedule with other values: its target is the
stack's function (output TriggerFunctionArn), invoked with the role of the template's schedule
(output ScheduleRoleArn, else the role RebalanceSchedule uses), the same retry policy (2 retries
within an hour) and dead-letter queue (output DeadLetterQueueArn), and the same input: the ids,
Scheduler's context attributes <aws.scheduler.schedule-arn> and <aws.scheduler.scheduled-time>
(so that Scheduler's retries of one run are one delivery for the function's guard) and, only when
asked, skipScheduleValidation (else the stack's default applies, as for the template's). The
flexible time window is off unless asked; the time zone is UTC unless asked. tools/schedule_spec.py
holds these rules.

The schedules are those of the stack's schedule group (output ScheduleGroupName, the template's
RebalanceScheduleGroup, whose schedules alone the schedule role trusts) whose target is the
stack's function. A stack deployed before the group existed has no such output: the tool then
works in the account's `default` group, on the schedules that target this stack's function.
`remove` refuses the template's own schedule (resource RebalanceSchedule: change the stack's
parameters instead) and any schedule that does not target the stack's function.

`sync` reads the file (tools/schedule_plan.py: every problem named file:schedule:field, exit 2
before any AWS call), compares each schedule with the group's (GetSchedule), prints the plan
(create, update, delete, unchanged, each with the fields that change) and applies it only with
--yes. The group's schedules the file does not name are kept unless --prune. The template's own
schedule is CloudFormation's: shown as managed by the stack, never updated or deleted; a file that
names it is refused. An apply step that fails is reported and the others still run (each
schedule is independent); the exit status is then 1.

Region, credentials and endpoint come from the standard AWS environment, as for the other tools.
Nothing here reads the Glider API key.

exit status: 0 done (or nothing to do), 1 refused, aborted, an apply step failed or an AWS error,
2 usage error (a bad option or schedules file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from tools.base import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ToolError,
    UsageError,
    add_stack_options,
    describe,
    positive_int,
    prog,
    run_main,
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
from tools.schedule_plan import (
    CHANGING,
    Action,
    Desired,
    FileErrors,
    Plan,
    Step,
    Target,
    changes_cell,
    load_file,
    plan,
    plan_json,
)
from tools.schedule_spec import (
    DEFAULT_TIME_ZONE,
    DESCRIPTION,
    MAX_WINDOW_MINUTES,
    RETRY_POLICY,
    expression,
    input_of,
    input_too_long,
    schedule_name,
    time_zone,
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
PLAN_HEADERS: Final = ["ACTION", "NAME", "CHANGES"]
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
  {PROG} sync --stack glider-rebalance-trigger --file docs/schedules.example.yaml
  {PROG} sync --stack glider-rebalance-trigger --file schedules.yaml --prune --yes

Expressions: rate(N minute[s]|hour[s]|day[s]), cron(minutes hours day-of-month month
day-of-week year) with ? in one of the two day fields, at(yyyy-mm-ddThh:mm:ss).
exit status: 0 done (or nothing to do), 1 refused, aborted, an apply step failed or an AWS
error, 2 usage error (a bad option or schedules file).
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


def load_stack(aws: Aws, name: str, *, outputs: Mapping[str, str] | None = None) -> Stack:
    """The stack's schedules' side; `outputs` when the caller has already read them."""
    try:
        cloudformation = aws.cloudformation()
    except BotoCoreError as exc:
        raise ToolError(f"stack {name}: {describe(exc)}") from exc
    if outputs is None:
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

    def for_sync(self, names: Sequence[str]) -> dict[str, GetScheduleOutputTypeDef]:
        """The schedules sync may change, by name: the whole group when it is the stack's own;
        in the account's `default` group, the stack's only (a name of the file that is another's
        there is refused, not taken over)."""
        if self.stack.group != DEFAULT_GROUP:
            return {s.get("Name", ""): s for s in self.in_group()}
        found = {s.get("Name", ""): s for s in self.of_the_stack()}
        for name in names:
            other = None if name in found else self.get(name)
            if other is not None:
                target = other.get("Target", {}).get("Arn", "")
                raise ToolError(
                    f"schedule {name} in group {DEFAULT_GROUP} targets {target}, not stack "
                    f"{self.stack.name}'s function: not taking it over (rename it in the file)"
                )
        return found

    def in_group(self) -> list[GetScheduleOutputTypeDef]:
        """Every schedule of the group, each in full."""
        names = []
        try:
            pages = self.client.get_paginator("list_schedules").paginate(GroupName=self.stack.group)
            for page in pages:
                names += [s["Name"] for s in page.get("Schedules", []) if s.get("Name")]
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"schedule group {self.stack.group}: {describe(exc)}") from exc
        found = [self.get(name) for name in sorted(names)]
        return [schedule for schedule in found if schedule is not None]

    def target(self) -> Target:
        if self.stack.dlq_arn is None:
            raise ToolError(f"stack {self.stack.name} has no output DeadLetterQueueArn")
        return Target(self.stack.function_arn, self.role_arn(), self.stack.dlq_arn)

    def request(self, schedule: Desired, target: Target) -> CreateScheduleInputTypeDef:
        """CreateSchedule's (and UpdateSchedule's) request: the template's schedule with these
        values."""
        window: FlexibleTimeWindowTypeDef = (
            {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": schedule.flexible_window_minutes}
            if schedule.flexible_window_minutes
            else {"Mode": "OFF"}
        )
        scheduled: TargetTypeDef = {
            "Arn": target.function_arn,
            "RoleArn": target.role_arn,
            "Input": schedule.input,
            "RetryPolicy": {
                "MaximumRetryAttempts": RETRY_POLICY["MaximumRetryAttempts"],
                "MaximumEventAgeInSeconds": RETRY_POLICY["MaximumEventAgeInSeconds"],
            },
            "DeadLetterConfig": {"Arn": target.dlq_arn},
        }
        return {
            "Name": schedule.name,
            "GroupName": self.stack.group,
            "ScheduleExpression": schedule.expression,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": window,
            "State": "ENABLED" if schedule.enabled else "DISABLED",
            "Description": DESCRIPTION,
            "Target": scheduled,
        }

    def apply(self, step: Step, target: Target) -> None:
        """One step of a plan; ToolError naming the schedule when AWS refuses it."""
        try:
            if step.action is Action.DELETE:
                self.client.delete_schedule(Name=step.name, GroupName=self.stack.group)
            elif step.desired is not None and step.action is Action.CREATE:
                self.client.create_schedule(**self.request(step.desired, target))
            elif step.desired is not None and step.action is Action.UPDATE:
                self.client.update_schedule(**self.request(step.desired, target))
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"{step.action} {step.name}: {describe(exc)}") from exc


def row_of(schedule: GetScheduleOutputTypeDef, note: str) -> dict[str, object]:
    """A schedule as `list --json` shows it (the file's field names)."""
    window = schedule.get("FlexibleTimeWindow", {})
    ids, skip = input_of(schedule.get("Target", {}).get("Input", ""))
    return {
        "name": schedule.get("Name"),
        "expression": schedule.get("ScheduleExpression"),
        "timezone": schedule.get("ScheduleExpressionTimezone") or DEFAULT_TIME_ZONE,
        "enabled": schedule.get("State") == "ENABLED",
        "flexibleWindowMinutes": window.get("MaximumWindowInMinutes", 0)
        if window.get("Mode") == "FLEXIBLE"
        else 0,
        "skipScheduleValidation": skip,
        "portfolioIds": ids.split(","),
        "target": schedule.get("Target", {}).get("Arn"),
        "note": note,
    }


# --- commands --------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, schedules: Schedules) -> int:
    found = schedules.of_the_stack()
    stack = schedules.stack
    if args.json:
        rows = [row_of(s, schedules.cells(s)[-1]) for s in found]
        print(json.dumps({"stack": stack.name, "group": stack.group, "schedules": rows}, indent=2))
        return EXIT_OK
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


def desired_of(args: argparse.Namespace) -> Desired:
    """`add`'s options as the schedule they declare (the rules are sync's)."""
    schedule = Desired(
        name=args.name,
        expression=args.expression,
        timezone=args.time_zone or DEFAULT_TIME_ZONE,
        portfolio_ids=tuple(portfolio_ids(args.portfolio_ids)),
        skip_schedule_validation=True if args.skip_schedule_validation else None,
        enabled=not args.disabled,
        flexible_window_minutes=args.flexible_window_minutes or 0,
    )
    if too_long := input_too_long(schedule.input):
        raise UsageError(f"--portfolio-ids: {too_long}")
    return schedule


def cmd_add(args: argparse.Namespace, schedules: Schedules) -> int:
    stack = schedules.stack
    schedule = desired_of(args)
    if schedules.get(args.name) is not None:
        raise ToolError(
            f"a schedule named {args.name} already exists in group {stack.group}: not "
            f"overwriting it (choose another name, or remove it first)"
        )
    request = schedules.request(schedule, schedules.target())
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
    stored = schedules.get(args.name)
    if args.json:
        row = row_of(stored, "") if stored is not None else {"name": args.name}
        print(json.dumps({"created": created["ScheduleArn"], "schedule": row}, indent=2))
        return EXIT_OK
    print(f"Created {created['ScheduleArn']}:")
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
            "Change the stack's SchedulePortfolioIds, ScheduleExpression, ScheduleTimezone or "
            "ScheduleState instead"
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
    if args.json:
        print(json.dumps({"deleted": args.name, "group": stack.group}))
    else:
        print(f"Deleted {what}.")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, schedules: Schedules, desired: list[Desired]) -> int:
    stack = schedules.stack
    target = schedules.target()
    live = schedules.for_sync([schedule.name for schedule in desired])
    decided = plan(
        desired, live, target=target, own=stack.own_schedule, prune=args.prune, file=args.file
    )
    applying = args.yes and not decided.nothing_to_do
    if applying:
        refuse_while_paused(args, decided.enabling())
    if not args.json:
        show_plan(decided, stack, args.file)
    failed = apply_plan(schedules, decided, target, echo=not args.json) if applying else {}
    if args.json:
        steps = plan_json(decided.steps)
        for entry in steps:
            if applying and entry["action"] in CHANGING:
                entry["result"] = failed.get(str(entry["name"]), "done")
        summary = {"stack": stack.name, "group": stack.group, "file": args.file}
        print(json.dumps({**summary, "applied": applying, "steps": steps}, indent=2))
    elif failed:
        print(f"\n{len(failed)} step(s) failed: {', '.join(failed)}; the others were applied.")
    elif applying:
        print(f"\nApplied: group {stack.group} matches {args.file}.")
    elif not decided.nothing_to_do:
        print("\nNothing changed: run again with --yes to apply this plan.")
    return EXIT_ERROR if failed else EXIT_OK


def apply_plan(
    schedules: Schedules, decided: Plan, target: Target, *, echo: bool
) -> dict[str, str]:
    """Every changing step, in order; a step that fails does not stop the others (each schedule
    is independent). The failed ones, by name, with their error."""
    failed: dict[str, str] = {}
    for step in (s for s in decided.steps if s.action in CHANGING):
        try:
            schedules.apply(step, target)
        except ToolError as exc:
            failed[step.name] = str(exc)
        if echo:
            print(f"FAILED {failed[step.name]}" if step.name in failed else step.done)
    return failed


def show_plan(decided: Plan, stack: Stack, file: str) -> None:
    rows = [[s.action.value, s.name, changes_cell(s)] for s in decided.steps]
    if rows:
        for line in table(PLAN_HEADERS, rows):
            print(line)
        print()
    counts = ", ".join(f"{decided.count(action)} to {action}" for action in CHANGING)
    print(f"Plan for stack {stack.name}, {stack.group_note}, from {file}: {counts}.")
    if decided.nothing_to_do:
        print("Nothing to do.")


COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Schedules], int]]] = {
    "list": cmd_list,
    "add": cmd_add,
    "remove": cmd_remove,
}


def build_parser() -> argparse.ArgumentParser:
    stack_options = argparse.ArgumentParser(add_help=False)
    add_stack_options(stack_options, stack_required=True)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, add, remove and sync the schedules that rebalance through a stack.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "list", parents=[stack_options], help="the stack's schedules (expression, ids, state)"
    )
    add = commands.add_parser(
        "add", parents=[stack_options], help="a schedule, as the template makes its own"
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
    remove = commands.add_parser("remove", parents=[stack_options], help="delete a schedule")
    remove.add_argument(
        "--name", type=schedule_name, required=True, metavar="N", help="the schedule's name"
    )
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sync = commands.add_parser(
        "sync",
        parents=[stack_options],
        help="make the stack's group match a YAML file (a plan; applied with --yes)",
    )
    sync.add_argument(
        "--file", required=True, metavar="F", help="the schedules (docs/schedules.example.yaml)"
    )
    sync.add_argument("--yes", action="store_true", help="apply the plan (else only show it)")
    sync.add_argument(
        "--prune",
        action="store_true",
        help="delete the group's schedules the file does not name (never the template's own)",
    )
    return parser


def connect(args: argparse.Namespace) -> Schedules:
    aws = aws_for(args, config=_AWS_CONFIG)  # make up's stack, or an account
    return Schedules(aws.scheduler(), load_stack(aws, args.stack))


def refuse_while_paused(args: argparse.Namespace, enabling: Sequence[str]) -> None:
    """A paused stack's schedules stay disabled until resume: enabling one now would trigger
    rebalances during the pause. ToolError naming the pause and what would be enabled."""
    if not enabling:
        return
    # Imported here: tools.pause reads the stack's schedules through this module.
    from tools.pause import pause_of  # noqa: PLC0415

    record = pause_of(aws_for(args, config=_AWS_CONFIG), args.stack)
    if record is None:
        return
    raise ToolError(
        f"stack {args.stack} is paused since {record.paused_at} by {record.paused_by} "
        f"({record.reason}): not enabling {', '.join(enabling)} during the pause (resume "
        "first, or declare them disabled: enabled: false / --disabled); nothing changed"
    )


def work(args: argparse.Namespace) -> int:
    if not args.command:
        raise UsageError("a COMMAND: list, add, remove or sync")
    if args.command != "sync":
        if args.command == "add":
            desired_of(args)  # a usage error before any AWS call
            refuse_while_paused(args, [] if args.disabled else [args.name])
        return COMMANDS[args.command](args, connect(args))
    try:
        desired = load_file(Path(args.file), args.file)  # before any AWS call
        return cmd_sync(args, connect(args), desired)
    except FileErrors as exc:
        for error in exc.errors:
            print(f"{PROG}: error: {error}", file=sys.stderr)
        print(
            f"{PROG}: {len(exc.errors)} error(s) in {args.file}: nothing changed", file=sys.stderr
        )
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, work)


if __name__ == "__main__":
    sys.exit(main())
