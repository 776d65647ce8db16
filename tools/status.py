"""One screen on a stack: paused or not (and why), each schedule with its next run in its own
time zone, the queues, the dead letters by reason, the alarms in ALARM and the last triggers.

    glider-trigger status --stack NAME [--json]

(`make status ARGS='--stack NAME'`.)

Reads only: the DLQ's messages are received and made visible again at once (as `dlq list`
does), nothing is consumed. The work queue's oldest message's age is CloudWatch's
ApproximateAgeOfOldestMessage (its latest minute of the last 15; "unknown" without data). While
paused, a warning says when the oldest waiting message nears the end of the work queue's
retention (within a day, or a fifth of the retention if shorter).

exit status: 0 shown, 1 AWS refused a read, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.trigger_input import iso_time
from tools.base import EXIT_OK, ToolError, add_stack_options, describe, prog, run_main, table
from tools.common import aws_for, queue_attributes, retention_seconds
from tools.dlq import human_age, read_rows
from tools.history import recent_entries
from tools.next_run import Unsupported, Window, next_run
from tools.pause import (
    AWS_CONFIG,
    Kind,
    Pause,
    State,
    Target,
    load_target,
    loss_moment,
    now_utc,
    oldest_age_seconds,
    retention_warning,
    stamp,
)

if TYPE_CHECKING:
    from mypy_boto3_scheduler.type_defs import GetScheduleOutputTypeDef

PROG: Final = prog("status")
# A DLQ is read message by message: status counts at most this many (and says so beyond).
DLQ_SCAN_LIMIT: Final = 1000
UNKNOWN: Final = "?"
NEXT_RUN_FORMAT: Final = "%Y-%m-%d %H:%M %Z"

SCHEDULE_HEADERS: Final = ["SCHEDULE", "STATE", "EXPRESSION", "TIME ZONE", "NEXT RUN"]
QUEUE_HEADERS: Final = ["QUEUE", "WAITING", "IN FLIGHT", "OLDEST", "WHAT"]
DLQ_HEADERS: Final = ["REASON", "LETTERS"]
ALARM_HEADERS: Final = ["ALARM", "SINCE", "WHY"]
TRIGGER_HEADERS: Final = ["TIME", "PORTFOLIO", "KIND", "SOURCE", "OUTCOME", "REASON", "REBALANCE"]


@dataclass
class Report:
    stack: str
    pause: Pause | None
    switches: list[dict[str, str]] = field(default_factory=list)
    schedules: list[dict[str, str]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    oldest_age: float | None = None
    retention: int = 0
    warning: str | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    dead_letters_counted: int = 0
    dead_letters_depth: int = 0
    alarms: list[dict[str, str]] = field(default_factory=list)
    triggers: list[dict[str, str]] = field(default_factory=list)
    triggers_unread: str | None = None  # why the last triggers could not be read


# --- schedules -------------------------------------------------------------------------------


def next_run_cell(schedule: GetScheduleOutputTypeDef, now: datetime) -> str:
    """The next run in the schedule's own zone; "-" when it runs no more or is disabled, "?"
    for what tools/next_run.py cannot place (it says which)."""
    if schedule.get("State") != State.ENABLED.value:
        return "- (disabled)"
    window = Window(
        start=schedule.get("StartDate"),
        end=schedule.get("EndDate"),
        created=schedule.get("CreationDate"),
    )
    try:
        found = next_run(
            schedule.get("ScheduleExpression", ""),
            time_zone=schedule.get("ScheduleExpressionTimezone"),
            now=now,
            window=window,
        )
    except Unsupported:
        return UNKNOWN
    return "- (no more runs)" if found is None else found.strftime(NEXT_RUN_FORMAT)


def schedule_rows(target: Target, now: datetime) -> list[dict[str, str]]:
    return [
        {
            "name": schedule.get("Name", "-"),
            "state": schedule.get("State", "-"),
            "expression": schedule.get("ScheduleExpression", "-"),
            "timeZone": schedule.get("ScheduleExpressionTimezone") or "UTC",
            "nextRun": next_run_cell(schedule, now),
        }
        for schedule in target.schedules.of_the_stack()
    ]


# --- queues ----------------------------------------------------------------------------------


def queue_row(target: Target, what: str, output: str) -> dict[str, Any]:
    url = target.outputs.get(output)
    if not url:
        return {"queue": what, "waiting": None, "inFlight": None, "note": f"no output {output}"}
    attributes = queue_attributes(
        target.aws.sqs(),
        url,
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    )
    return {
        "queue": what,
        "url": url,
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def dead_letters(target: Target) -> tuple[Counter[str], int]:
    """Letters by reason (else class), of at most DLQ_SCAN_LIMIT; consumes nothing."""
    url = target.outputs.get("DeadLetterQueueUrl")
    if not url:
        return Counter(), 0
    rows = read_rows(target.aws.sqs(), url, limit=DLQ_SCAN_LIMIT)
    found = Counter(row.reason or row.failure_class or "-" for row in rows)
    return found, found.total()


# --- alarms ----------------------------------------------------------------------------------


def alarms_in_alarm(target: Target) -> list[dict[str, str]]:
    """The stack's alarms in ALARM: the template names each <stack>-..."""
    found = []
    try:
        pages = (
            target.aws.cloudwatch()
            .get_paginator("describe_alarms")
            .paginate(AlarmNamePrefix=f"{target.stack}-", StateValue="ALARM")
        )
        for page in pages:
            for alarm in page.get("MetricAlarms", []):
                since = alarm.get("StateUpdatedTimestamp")
                found.append({
                    "name": alarm.get("AlarmName", "-"),
                    "since": stamp(since) if since else "-",
                    "why": alarm.get("StateReason", "-"),
                })  # fmt: skip
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"alarms of {target.stack}: {describe(exc)}") from exc
    return found


# --- last triggers ---------------------------------------------------------------------------


def last_triggers(target: Target, *, limit: int = 10) -> list[dict[str, str]]:
    """The last triggers and final outcomes across portfolios, newest first, from the history
    records the function writes (tools/history.py): a row per TRIGGER_HEADERS."""
    return [
        {
            "time": iso_time(entry.at),
            "portfolio": entry.portfolio_id,
            "kind": entry.kind.value,
            "source": entry.source,
            "outcome": entry.outcome,
            "reason": entry.reason or "-",
            "rebalance": entry.rebalance_id or "-",
        }
        for entry in recent_entries(target.aws, target.stack, limit)
    ]


# --- the report ------------------------------------------------------------------------------


def gather(target: Target) -> Report:
    now = now_utc()
    record = target.load()
    report = Report(stack=target.stack, pause=record)
    report.schedules = schedule_rows(target, now)
    if target.rule is not None:
        bus, name = target.rule
        view = target.rule_view(bus, name)
        report.switches.append(
            {
                "kind": Kind.RULE.value,
                "name": name,
                "state": view.state.value,
                # Held by pause: enabled, its events to the work queue.
                "held": "yes" if view.held else "no",
            }
        )
    uuid, state = target.mapping()
    report.switches.append({"kind": Kind.MAPPING.value, "name": uuid, "state": state.value})
    work = queue_row(target, "work queue", "WorkQueueUrl")
    report.oldest_age = oldest_age_seconds(target.aws, target.work_queue_url)
    work["oldestSeconds"] = report.oldest_age
    work["note"] = "waiting to be triggered"
    follow_ups = queue_row(target, "follow-up queue", "FollowUpQueueUrl")
    follow_ups["note"] = "follow-ups pending"
    dlq = queue_row(target, "DLQ", "DeadLetterQueueUrl")
    dlq["note"] = "dead letters"
    report.queues = [work, follow_ups, dlq]
    report.retention = retention_seconds(target.aws.sqs(), target.work_queue_url)
    if record is not None:
        waiting = (work.get("waiting") or 0) + (work.get("inFlight") or 0)
        loss = loss_moment(
            now=now,
            retention=report.retention,
            oldest_age=report.oldest_age if waiting else 0,
        )
        report.warning = retention_warning(
            now=now, loss=loss, retention=report.retention, paused=True
        )
    letters, counted = dead_letters(target)
    report.dead_letters = dict(letters.most_common())
    report.dead_letters_counted = counted
    report.dead_letters_depth = (dlq.get("waiting") or 0) + (dlq.get("inFlight") or 0)
    report.alarms = alarms_in_alarm(target)
    try:
        report.triggers = last_triggers(target)
    except ToolError as exc:  # one section unread: the rest of the screen still answers
        report.triggers_unread = str(exc)
    return report


def as_json(report: Report) -> dict[str, Any]:
    return {
        "stack": report.stack,
        "paused": report.pause is not None,
        "pause": report.pause.as_json() if report.pause else None,
        "retentionWarning": report.warning,
        "triggers": report.switches,
        "schedules": report.schedules,
        "queues": report.queues,
        "workQueueRetentionSeconds": report.retention,
        "deadLettersByReason": report.dead_letters,
        "deadLettersCounted": report.dead_letters_counted,
        "alarmsInAlarm": report.alarms,
        "lastTriggers": report.triggers,
        "lastTriggersUnread": report.triggers_unread,
    }


def lines(report: Report) -> list[str]:
    out = [*pause_lines(report), ""]
    out.append("Schedules")
    if report.schedules:
        out += table(
            SCHEDULE_HEADERS,
            [
                [s["name"], s["state"], s["expression"], s["timeZone"], s["nextRun"]]
                for s in report.schedules
            ],
        )
        if any(s["nextRun"] == UNKNOWN for s in report.schedules):
            out.append(f"{UNKNOWN}: an expression tools/next_run.py cannot place in time")
    else:
        out.append("(none)")
    out += ["", "Queues"]
    out += table(QUEUE_HEADERS, [queue_cells(q) for q in report.queues])
    out += ["", "Dead letters by reason"]
    if report.dead_letters:
        out += table(DLQ_HEADERS, [[k, str(v)] for k, v in report.dead_letters.items()])
        if report.dead_letters_counted < report.dead_letters_depth:
            out.append(
                f"(the first {report.dead_letters_counted} of ~{report.dead_letters_depth}: "
                "glider-trigger dlq list for all)"
            )
    else:
        out.append("(none)")
    out += ["", "Alarms in ALARM"]
    if report.alarms:
        out += table(ALARM_HEADERS, [[a["name"], a["since"], a["why"]] for a in report.alarms])
    else:
        out.append("(none)")
    out += ["", "Last triggers"]
    out += table(
        TRIGGER_HEADERS,
        [[t.get(h.lower(), "-") for h in TRIGGER_HEADERS] for t in report.triggers],
    )
    if report.triggers_unread:
        out.append(f"(not read: {report.triggers_unread})")
    elif not report.triggers:
        out.append("(none recorded)")
    return out


def _state_shown(switch: dict[str, str]) -> str:
    held = switch.get("held") == "yes"
    return "HELD (its events wait in the work queue)" if held else switch["state"]


def pause_lines(report: Report) -> list[str]:
    switches = ", ".join(f"{s['kind']} {_state_shown(s)}" for s in report.switches)
    record = report.pause
    if record is None:
        return [f"Stack {report.stack}: running (not paused). {switches}."]
    for_how_long = human_age((now_utc() - record.since).total_seconds())
    out = [
        f"Stack {report.stack}: PAUSED since {record.paused_at} ({for_how_long}) by "
        f"{record.paused_by}: {record.reason}",
        f"  {switches}. Resume: glider-trigger resume --stack {report.stack}",
    ]
    enabled = [s["name"] for s in report.schedules if s["state"] == State.ENABLED.value]
    if enabled:
        out.append(
            f"  warning: schedule(s) {', '.join(enabled)} ENABLED while paused (pause again to "
            "disable them too)"
        )
    if report.warning:
        out.append(f"  warning: {report.warning}")
    return out


def queue_cells(queue: dict[str, Any]) -> list[str]:
    def number(key: str) -> str:
        value = queue.get(key)
        return "-" if value is None else str(value)

    oldest = "-"
    empty = not (queue.get("waiting") or queue.get("inFlight"))
    if "oldestSeconds" in queue and not empty:
        seconds = queue["oldestSeconds"]
        oldest = "unknown" if seconds is None else human_age(seconds)
    return [queue["queue"], number("waiting"), number("inFlight"), oldest, queue.get("note", "")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="One screen: paused or not (and why), the schedules' next runs in their own "
        "time zones, the queues, the DLQ by reason, alarms in ALARM, the last triggers.",
        epilog="exit status: 0 shown, 1 AWS refused a read, 2 usage error.",
    )
    add_stack_options(parser, stack_required=True, json_help="one JSON document")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def work(args: argparse.Namespace) -> int:
        target = load_target(aws_for(args, config=AWS_CONFIG), args.stack)
        report = gather(target)
        if args.json:
            print(json.dumps(as_json(report)))
        else:
            print("\n".join(lines(report)))
        return EXIT_OK

    return run_main(build_parser(), argv, work)
