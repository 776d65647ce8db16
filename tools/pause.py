"""Pause and resume every way a stack triggers rebalances: its schedules, its upstream rule and
its work queue's event source mapping; nothing is lost, work waits in the work queue.

    glider-trigger pause --stack NAME --reason TEXT [--json]
    glider-trigger resume --stack NAME [--json]

(`make pause ARGS='--stack NAME --reason TEXT'`, `make resume ARGS='--stack NAME'`.)

`pause` disables each schedule and the work queue's mapping that is enabled, holds the upstream
rule (it stays enabled, sending its events to the work queue instead of the function: EventBridge
drops an event whose rule is disabled), and records, before it changes anything, what state each
was in (the rule's targets whole; the reason, the time and who paused: the caller's STS
identity, else $USER). `resume` enables exactly what was enabled before the pause and deletes
the record: a schedule that was disabled before stays disabled. Pausing a paused stack keeps
the first pause's record (its reason, time, who, and every "before" state) and disables anything
enabled since (a schedule added meanwhile, say), adding it to what resume will enable.

What is not kept: a schedule's runs while it is disabled (the next run after resume comes on
time). An upstream event sent while paused waits in the work queue like any message; the same
event delivered both ways while the targets change over (the queue's target is added before the
function's is removed, and the other way round on resume) is one delivery to the guard: its key
is the event's id whichever way it came.

What keeps running while paused: the follow-ups of rebalances already triggered (the follow-up
queue's mapping is left alone: a follow-up only looks at a rebalance Glider already started, it
never triggers one), and whatever invocation was already running when the mapping was disabled.

The record is an item of the stack's IdempotencyTable (id "glider-rebalance-trigger#pause"): the
table is the stack's own durable store, it goes with the stack, a conditional write keeps two
pauses from both believing they were first, and the guard's ids (the prefix, '#', then an MD5 in
hex) can never be that id. It has no `expiration`, so the table's TTL never deletes it.

A paused work queue keeps its messages for its MessageRetentionPeriod (4 days in the template)
from when each was sent: `pause` prints when the oldest waiting message would be lost, `status`
warns as that nears, and the alarm WorkQueueRetentionAge fires before it.

exit status: 0 done (also: resume of a stack that is not paused, which says so), 1 a change AWS
refused (what was changed so far is recorded: run the command again), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from tools.base import (
    EXIT_OK,
    ToolError,
    add_stack_options,
    describe,
    prog,
    run_main,
)
from tools.common import (
    TABLE_RESOURCE,
    Aws,
    aws_for,
    describe_stack,
    error_code,
    outputs_of,
    parameters_of,
    queue_attributes,
    retention_seconds,
    stack_resource,
)
from tools.dlq import human_age
from tools.schedules import Schedules, load_stack

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import TargetTypeDef
    from mypy_boto3_scheduler.type_defs import GetScheduleOutputTypeDef, UpdateScheduleInputTypeDef

# The pause's item in the IdempotencyTable: the guard's ids are "glider-rebalance-trigger#" and
# 32 hex digits (functions/trigger/glider_trigger/outbound/guard.py), never this.
RECORD_ID: Final = "glider-rebalance-trigger#pause"
# Logical ids in template.yaml: SAM names an event's resources <function><event>, and
# DeadLetterQueuePolicy already names the rule's.
RULE_RESOURCE: Final = "TriggerFunctionUpstreamRebalanceRequested"
DEFAULT_BUS: Final = "default"
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%SZ"
AWS_CONFIG: Final = BotoConfig(
    connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4}
)

FOLLOW_UPS_NOTE: Final = (
    "Follow-ups of rebalances already triggered keep running (they only look at a rebalance "
    "Glider started; they never trigger one)."
)

# The rule's target while paused: the work queue (WorkQueueUpstreamPolicy in template.yaml lets
# the rule send there), with the function target's retry policy and dead-letter queue.
HOLD_TARGET_ID: Final = "PausedToWorkQueue"
HOLD_POLICY_RESOURCE: Final = "WorkQueueUpstreamPolicy"
UPSTREAM_NOTE: Final = (
    "Upstream events wait in the work queue too: the rule sends them there until resume."
)


class Kind(StrEnum):
    """What pause switches off."""

    SCHEDULE = "schedule"
    RULE = "upstream rule"
    MAPPING = "work queue's event source mapping"


class State(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


@dataclass(frozen=True)
class Switch:
    """One way rebalances are triggered, and its state before the pause."""

    kind: Kind
    name: str  # a schedule's or rule's name, a mapping's UUID
    scope: str  # the schedule's group, the rule's bus, the mapping's queue ARN
    before: State
    # The rule's targets before the pause (JSON), put back by resume; "" for the others.
    targets: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind.value} {self.name}"


@dataclass(frozen=True)
class Pause:
    """The record: why, when, who, and every switch's state before the pause."""

    reason: str
    paused_at: str  # TIME_FORMAT, UTC
    paused_by: str
    switches: tuple[Switch, ...] = field(default_factory=tuple)

    @property
    def since(self) -> datetime:
        return datetime.strptime(self.paused_at, TIME_FORMAT).replace(tzinfo=UTC)

    def to_enable(self) -> list[Switch]:
        """What resume enables: what was enabled before the pause."""
        return [switch for switch in self.switches if switch.before is State.ENABLED]

    def knows(self, kind: Kind, name: str) -> Switch | None:
        return next((s for s in self.switches if s.kind is kind and s.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "pausedAt": self.paused_at,
            "pausedBy": self.paused_by,
            "switches": [
                {**asdict(switch), "kind": switch.kind.value, "before": switch.before.value}
                for switch in self.switches
            ],
        }


def pause_from_item(item: dict[str, Any]) -> Pause:
    """The record as DynamoDB returned it (its attributes as {"S": ...})."""
    try:
        switches = json.loads(item["switches"]["S"])
        return Pause(
            reason=item["reason"]["S"],
            paused_at=item["paused_at"]["S"],
            paused_by=item["paused_by"]["S"],
            switches=tuple(
                Switch(
                    Kind(s["kind"]),
                    s["name"],
                    s["scope"],
                    State(s["before"]),
                    s.get("targets", ""),
                )
                for s in switches
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolError(
            f"the pause record {RECORD_ID} is not what pause writes ({type(exc).__name__}: "
            f"{exc}): read it in the IdempotencyTable"
        ) from exc


def item_of(record: Pause) -> dict[str, Any]:
    switches = [
        {
            "kind": s.kind.value,
            "name": s.name,
            "scope": s.scope,
            "before": s.before.value,
            "targets": s.targets,
        }
        for s in record.switches
    ]
    return {
        "id": {"S": RECORD_ID},
        "reason": {"S": record.reason},
        "paused_at": {"S": record.paused_at},
        "paused_by": {"S": record.paused_by},
        "switches": {"S": json.dumps(switches)},
    }


# --- the stack -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    """The upstream rule: whether it delivers to the function, whether pause holds it, and its
    targets but the hold (as PutTargets takes them back)."""

    state: State  # ENABLED: it delivers to the function; DISABLED: disabled, or held
    held: bool  # pause's hold: the work queue its one target
    targets: list[dict[str, Any]]


@dataclass
class Target:
    """Where pause, resume and status find the stack's switches and its work queue."""

    aws: Aws
    stack: str
    table: str
    schedules: Schedules
    rule: tuple[str, str] | None  # (bus, name); None when the template left the rule out
    hold_ready: bool  # the work queue lets the rule send there (WorkQueueUpstreamPolicy)
    function: str
    work_queue_arn: str
    work_queue_url: str
    outputs: dict[str, str]

    def load(self) -> Pause | None:
        return read_record(self.aws, self.table)

    def save(self, record: Pause, *, first: bool) -> None:
        """Write the record; the first pause only if no other pause wrote one meanwhile."""
        condition = "attribute_not_exists(id)" if first else "attribute_exists(id)"
        try:
            self.aws.dynamodb().put_item(
                TableName=self.table, Item=item_of(record), ConditionExpression=condition
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ToolError(
                    "another pause or resume changed the pause record meanwhile: run the "
                    "command again"
                ) from exc
            raise ToolError(f"the pause record in table {self.table}: {describe(exc)}") from exc
        except BotoCoreError as exc:
            raise ToolError(f"the pause record in table {self.table}: {describe(exc)}") from exc

    def delete(self) -> None:
        try:
            self.aws.dynamodb().delete_item(TableName=self.table, Key={"id": {"S": RECORD_ID}})
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"the pause record in table {self.table}: {describe(exc)}") from exc

    # --- the switches' states now ---

    def switches_now(self) -> list[Switch]:
        """Every switch, in its state now."""
        found = [
            Switch(
                Kind.SCHEDULE,
                schedule.get("Name", ""),
                self.schedules.stack.group,
                State(schedule.get("State", State.DISABLED.value)),
            )
            for schedule in self.schedules.of_the_stack()
        ]
        if self.rule is not None:
            bus, name = self.rule
            view = self.rule_view(bus, name)
            targets = view.targets if view.state is State.ENABLED else []
            found.append(Switch(Kind.RULE, name, bus, view.state, json.dumps(targets)))
        uuid, state = self.mapping()
        found.append(Switch(Kind.MAPPING, uuid, self.work_queue_arn, state))
        return found

    def rule_view(self, bus: str, name: str) -> RuleView:
        """The rule as pause sees it, from one DescribeRule and one ListTargetsByRule."""
        try:
            rule = self.aws.events().describe_rule(Name=name, EventBusName=bus)
            listed = self.aws.events().list_targets_by_rule(Rule=name, EventBusName=bus)
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"{Kind.RULE.value} {name}: {describe(exc)}") from exc
        targets = listed.get("Targets", [])
        # Held only when the work queue is its one target: one that still reaches the function
        # (a RemoveTargets that failed half-way) is enabled, so that pause finishes the hold.
        held = [t.get("Id") for t in targets] == [HOLD_TARGET_ID]
        enabled = rule.get("State") == "ENABLED" and not held
        return RuleView(
            state=State.ENABLED if enabled else State.DISABLED,
            held=held,
            targets=[dict(t) for t in targets if t.get("Id") != HOLD_TARGET_ID],
        )

    def mapping(self) -> tuple[str, State]:
        """The function's event source mapping on the work queue (not the follow-up queue's)."""
        try:
            mappings = self.aws.lambda_().list_event_source_mappings(
                FunctionName=self.function, EventSourceArn=self.work_queue_arn
            )["EventSourceMappings"]
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"the {Kind.MAPPING.value}: {describe(exc)}") from exc
        found = [m for m in mappings if m.get("EventSourceArn") == self.work_queue_arn]
        if not found or not found[0].get("UUID"):
            raise ToolError(
                f"function {self.function} has no event source mapping on {self.work_queue_arn}"
            )
        # Enabling and Updating end enabled; Disabling ends disabled.
        state = found[0].get("State", "")
        enabled = state in ("Enabled", "Enabling", "Updating", "Creating")
        return found[0]["UUID"], State.ENABLED if enabled else State.DISABLED

    # --- switching ---

    def switch(self, switch: Switch, state: State) -> None:
        try:
            if switch.kind is Kind.SCHEDULE:
                self._schedule(switch.name, state)
            elif switch.kind is Kind.RULE:
                self._rule(switch, state)
            else:
                self.aws.lambda_().update_event_source_mapping(
                    UUID=switch.name, Enabled=state is State.ENABLED
                )
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"{switch.label}: {describe(exc)}") from exc

    def _rule(self, switch: Switch, state: State) -> None:
        """Hold the rule (its events to the work queue) or release it (back to its targets of
        before). Each way the new target is added before the old one goes: an event in between
        may go both ways, never nowhere (the guard takes both as one delivery)."""
        events = self.aws.events()
        rule, bus = switch.name, switch.scope
        before: list[Any] = json.loads(switch.targets or "[]")
        if state is State.DISABLED:
            hold: TargetTypeDef = {"Id": HOLD_TARGET_ID, "Arn": self.work_queue_arn}
            if before and "RetryPolicy" in before[0]:
                hold["RetryPolicy"] = before[0]["RetryPolicy"]
            if before and "DeadLetterConfig" in before[0]:
                hold["DeadLetterConfig"] = before[0]["DeadLetterConfig"]
            _checked(events.put_targets(Rule=rule, EventBusName=bus, Targets=[hold]), rule)
            ids = [t["Id"] for t in before]
            if ids:
                removed = events.remove_targets(Rule=rule, EventBusName=bus, Ids=ids)
                _checked(removed, rule)  # else the function still gets events while paused
            return
        if before:
            _checked(events.put_targets(Rule=rule, EventBusName=bus, Targets=before), rule)
        removed = events.remove_targets(Rule=rule, EventBusName=bus, Ids=[HOLD_TARGET_ID])
        _checked(removed, rule)
        events.enable_rule(Name=rule, EventBusName=bus)

    def _schedule(self, name: str, state: State) -> None:
        schedule = self.schedules.get(name)
        if schedule is None:
            raise ToolError(f"{Kind.SCHEDULE.value} {name} is gone from group "
                            f"{self.schedules.stack.group}")  # fmt: skip
        self.aws.scheduler().update_schedule(**whole_schedule(schedule, state))


def _checked(answer: Any, rule: str) -> None:
    """PutTargets and RemoveTargets report a target they refused in their answer, not as an
    error: one is raised here (the record is kept; running the command again finishes it)."""
    if answer.get("FailedEntryCount"):
        failed = answer.get("FailedEntries", [])
        raise ToolError(f"{Kind.RULE.value} {rule}: EventBridge refused {failed}: run it again")


def whole_schedule(schedule: GetScheduleOutputTypeDef, state: State) -> UpdateScheduleInputTypeDef:
    """UpdateSchedule's input: the schedule as it is, but for its state. Scheduler's
    UpdateSchedule replaces the whole schedule (what it is not given returns to its default: the
    description, the time zone, the start and end dates...), so everything goes back."""
    update: UpdateScheduleInputTypeDef = {
        "Name": schedule["Name"],
        "GroupName": schedule["GroupName"],
        "ScheduleExpression": schedule["ScheduleExpression"],
        "FlexibleTimeWindow": schedule["FlexibleTimeWindow"],
        "Target": schedule["Target"],
        "State": state.value,
    }
    if "ScheduleExpressionTimezone" in schedule:
        update["ScheduleExpressionTimezone"] = schedule["ScheduleExpressionTimezone"]
    if "StartDate" in schedule:
        update["StartDate"] = schedule["StartDate"]
    if "EndDate" in schedule:
        update["EndDate"] = schedule["EndDate"]
    if schedule.get("Description"):
        update["Description"] = schedule["Description"]
    if "KmsKeyArn" in schedule:
        update["KmsKeyArn"] = schedule["KmsKeyArn"]
    if "ActionAfterCompletion" in schedule:
        update["ActionAfterCompletion"] = schedule["ActionAfterCompletion"]
    return update


def load_target(aws: Aws, stack: str) -> Target:
    cloudformation = aws.cloudformation()
    found = describe_stack(cloudformation, stack)
    outputs = outputs_of(found)
    missing = [
        key
        for key in ("TriggerFunctionName", "WorkQueueArn", "WorkQueueUrl")
        if not outputs.get(key)
    ]
    if missing:
        raise ToolError(f"stack {stack} has no output {', '.join(missing)}")
    table = stack_resource(cloudformation, stack, TABLE_RESOURCE)
    if not table:
        raise ToolError(f"stack {stack} has no {TABLE_RESOURCE}: nowhere to record the pause")
    rule = rule_of(stack_resource(cloudformation, stack, RULE_RESOURCE), parameters_of(found))
    return Target(
        aws=aws,
        stack=stack,
        table=table,
        schedules=Schedules(aws.scheduler(), load_stack(aws, stack, outputs=outputs)),
        rule=rule,
        hold_ready=rule is None
        or stack_resource(cloudformation, stack, HOLD_POLICY_RESOURCE) is not None,
        function=outputs["TriggerFunctionName"],
        work_queue_arn=outputs["WorkQueueArn"],
        work_queue_url=outputs["WorkQueueUrl"],
        outputs=outputs,
    )


def pause_of(aws: Aws, stack: str) -> Pause | None:
    """The stack's pause record, or None when it is not paused (or has no table to keep one)."""
    table = stack_resource(aws.cloudformation(), stack, TABLE_RESOURCE)
    return read_record(aws, table) if table else None


def read_record(aws: Aws, table: str) -> Pause | None:
    """The pause record in the stack's table, or None."""
    try:
        item = aws.dynamodb().get_item(
            TableName=table, Key={"id": {"S": RECORD_ID}}, ConsistentRead=True
        )
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"the pause record in table {table}: {describe(exc)}") from exc
    found = item.get("Item")
    return pause_from_item(dict(found)) if found else None


def rule_of(physical_id: str | None, parameters: dict[str, str]) -> tuple[str, str] | None:
    """(bus, name) of the rule. CloudFormation's id of a rule on a custom bus is "bus|name"."""
    if not physical_id:
        return None
    bus, _, name = physical_id.rpartition("|")
    return bus or parameters.get("EventBusName") or DEFAULT_BUS, name


# --- facts pause and status share ------------------------------------------------------------


def who(aws: Aws) -> str:
    """The caller's identity (STS), else $USER: who paused."""
    try:
        return aws.sts().get_caller_identity()["Arn"]
    except (ClientError, BotoCoreError, KeyError):
        return os.environ.get("USER") or "unknown"


def now_utc() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def queue_depth(aws: Aws, queue_url: str) -> int:
    """Messages waiting or in flight."""
    attributes = queue_attributes(
        aws.sqs(), queue_url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
    )
    return sum(int(value) for value in attributes.values())


def oldest_age_seconds(aws: Aws, queue_url: str) -> float | None:
    """The work queue's ApproximateAgeOfOldestMessage (CloudWatch's latest in the last 15
    minutes); None when unreadable or without data (an empty queue, or an emulator)."""
    end = now_utc()
    try:
        points = aws.cloudwatch().get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=end - timedelta(minutes=15),
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (ClientError, BotoCoreError):
        return None
    dated = [p for p in points if "Timestamp" in p and "Maximum" in p]
    if not dated:
        return None
    return max(dated, key=lambda p: p["Timestamp"])["Maximum"]


def loss_moment(*, now: datetime, retention: int, oldest_age: float | None) -> datetime:
    """When the oldest message waiting now would be deleted by SQS (retention counts from each
    message's send): from now with no message waiting, or its age unknown (said beside it)."""
    return now + timedelta(seconds=retention - (oldest_age or 0))


def retention_warning(*, now: datetime, loss: datetime, retention: int, paused: bool) -> str | None:
    """status's warning: paused, and the oldest message is within a day (or a fifth of the
    retention, if that is shorter) of being lost."""
    margin = min(timedelta(days=1), timedelta(seconds=retention / 5))
    if not paused or loss - now > margin:
        return None
    left = max(0.0, (loss - now).total_seconds())
    return (
        f"the oldest waiting message is lost in {human_age(left)} (at {stamp(loss)}: the work "
        f"queue keeps messages {human_age(retention)}): resume before then "
        f"(`glider-trigger resume`)"
    )


# --- commands --------------------------------------------------------------------------------


def _checked_pause(args: argparse.Namespace, target: Target) -> str:
    """The pause's reason, once the pause can be done as said (UsageError/ToolError first)."""
    reason = str(args.reason).strip()
    if not reason:
        raise ToolError("--reason is empty: say why the stack is paused")
    if not target.hold_ready:
        # Without the queue's policy EventBridge could not write to the work queue: held events
        # would go to the rule's DLQ while pause says they wait. Nothing is changed.
        raise ToolError(
            f"stack {target.stack} has no {HOLD_POLICY_RESOURCE} (a template from before pause "
            "and resume): deploy this version first, so that the upstream rule's events can wait "
            "in the work queue"
        )
    return reason


def cmd_pause(args: argparse.Namespace, target: Target) -> int:
    reason = _checked_pause(args, target)
    earlier = target.load()
    now_states = target.switches_now()
    record = merged_record(earlier, now_states, reason=reason, by=who(target.aws), now=now_utc())
    # Recorded before anything changes: should a change fail, resume still knows what to enable.
    target.save(record, first=earlier is None)
    changed = [s for s in now_states if s.before is State.ENABLED]
    for switch in changed:
        target.switch(switch, State.DISABLED)
    retention = retention_seconds(target.aws.sqs(), target.work_queue_url)
    waiting = queue_depth(target.aws, target.work_queue_url)
    oldest = oldest_age_seconds(target.aws, target.work_queue_url) if waiting else 0.0
    loss = loss_moment(now=now_utc(), retention=retention, oldest_age=oldest)
    if args.json:
        print(json.dumps({
            **record.as_json(),
            "paused": True,
            "alreadyPaused": earlier is not None,
            "disabledNow": [s.label for s in changed],
            "retentionSeconds": retention,
            "waitingMessages": waiting,
            "oldestMessageAgeSeconds": oldest,
            "oldestMessageLostAt": stamp(loss),
        }))  # fmt: skip
        return EXIT_OK
    if earlier is not None:
        print(
            f"Stack {target.stack} was already paused since {earlier.paused_at} by "
            f"{earlier.paused_by} ({earlier.reason}): that pause stands."
        )
    for switch in changed:
        print(f"{_paused_verb(switch):<9} {switch.label}")
    for switch in now_states:
        if switch.before is State.DISABLED:
            kept = record.knows(switch.kind, switch.name)
            note = "(already, before the pause: resume leaves it disabled)"
            if kept is not None and kept.before is State.ENABLED:
                note = "(since the first pause: resume enables it)"
            print(f"disabled  {switch.label} {note}")
    print(
        f"\nStack {target.stack} is paused ({record.reason}). Nothing is lost: new work waits in "
        f"the work queue. {FOLLOW_UPS_NOTE}"
    )
    if target.rule is not None:
        print(UPSTREAM_NOTE)
    if not waiting:
        known = " (no message waits now: counted from now)"
    elif oldest is None:
        known = (
            f" ({waiting} waiting, their age unknown to CloudWatch: counted from now, so earlier)"
        )
    else:
        known = ""
    print(
        f"The work queue keeps a message {human_age(retention)}: paused beyond {stamp(loss)}"
        f"{known}, the oldest waiting message would be lost."
    )
    print(f"Resume with: glider-trigger resume --stack {target.stack}")
    return EXIT_OK


def _paused_verb(switch: Switch) -> str:
    """What pause did to a switch: the rule is held (sending to the work queue), not disabled."""
    return "held" if switch.kind is Kind.RULE else "disabled"


def merged_record(
    earlier: Pause | None, now_states: Sequence[Switch], *, reason: str, by: str, now: datetime
) -> Pause:
    """The record after this pause: the first pause's reason, time, who and "before" states
    stand; a switch it did not know (a schedule added since) joins with its state now."""
    if earlier is None:
        return Pause(reason, stamp(now), by, tuple(now_states))
    added = tuple(s for s in now_states if earlier.knows(s.kind, s.name) is None)
    return replace(earlier, switches=earlier.switches + added)


def cmd_resume(args: argparse.Namespace, target: Target) -> int:
    record = target.load()
    if record is None:
        if args.json:
            print(json.dumps({"paused": False, "enabled": []}))
        else:
            print(f"Stack {target.stack} is not paused: nothing to resume.")
        return EXIT_OK
    schedules_now = {s.get("Name") for s in target.schedules.of_the_stack()}
    enabled, gone = [], []
    for switch in record.to_enable():
        if switch.kind is Kind.SCHEDULE and switch.name not in schedules_now:
            gone.append(switch)  # removed while paused: nothing to enable
            continue
        target.switch(switch, State.ENABLED)
        enabled.append(switch)
    # Only once everything is enabled: a failure above leaves the record for the next resume.
    target.delete()
    kept = [s for s in record.switches if s.before is State.DISABLED]
    if args.json:
        print(json.dumps({
            "paused": False,
            "pause": record.as_json(),
            "enabled": [s.label for s in enabled],
            "leftDisabled": [s.label for s in kept],
            "gone": [s.label for s in gone],
        }))  # fmt: skip
        return EXIT_OK
    for switch in enabled:
        print(f"enabled   {switch.label}")
    for switch in kept:
        print(f"disabled  {switch.label} (disabled before the pause: left so)")
    for switch in gone:
        print(f"gone      {switch.label} (removed while paused)")
    paused_for = human_age((now_utc() - record.since).total_seconds())
    print(
        f"\nStack {target.stack} resumed after {paused_for} (paused by {record.paused_by}: "
        f"{record.reason}). The work queue's backlog is triggered at the configured pace."
    )
    return EXIT_OK


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "pause":
        parser = argparse.ArgumentParser(
            prog=prog(command),
            description="Stop every way the stack triggers rebalances: its schedules, its "
            "upstream rule and its work queue's event source mapping. Nothing is lost: new work "
            f"waits in the work queue. {FOLLOW_UPS_NOTE}",
            epilog="exit status: 0 paused, 1 AWS refused a change (run it again), 2 usage error.",
        )
        parser.add_argument("--reason", required=True, metavar="TEXT", help="why (status shows it)")
    else:
        parser = argparse.ArgumentParser(
            prog=prog(command),
            description="Enable exactly what pause disabled (what was disabled before stays so).",
            epilog="exit status: 0 resumed, or not paused (says so), 1 AWS refused a change (run "
            "it again), 2 usage error.",
        )
    add_stack_options(parser, stack_required=True, json_help="one JSON document")
    return parser


def main(argv: Sequence[str] | None = None, *, command: str = "pause") -> int:
    parser = build_parser(command)

    def work(args: argparse.Namespace) -> int:
        target = load_target(aws_for(args, config=AWS_CONFIG), args.stack)
        return cmd_pause(args, target) if command == "pause" else cmd_resume(args, target)

    return run_main(parser, argv, work)
