"""What a schedule of the stack is, as template.yaml makes its own: the rules for its name,
expression and time zone, its retry policy and window, and its input (the function's contract);
shared by `schedules add` and `schedules sync`. Pure: no AWS call here."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from glider_trigger.domain.trigger_input import (
    PORTFOLIO_IDS,
    SCHEDULE_ARN,
    SCHEDULED_TIME,
    SKIP_SCHEDULE_VALIDATION,
    listed_ids,
)

# What template.yaml's RebalanceSchedule sets; tests/integration/test_schedules_tool.py checks
# these against the template itself.
RETRY_POLICY: Final = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}
SCHEDULE_ARN_ATTRIBUTE: Final = "<aws.scheduler.schedule-arn>"
SCHEDULED_TIME_ATTRIBUTE: Final = "<aws.scheduler.scheduled-time>"
DESCRIPTION: Final = "Periodic Glider portfolio rebalance (make schedules)."
MAX_WINDOW_MINUTES: Final = 1440  # Scheduler's limit for MaximumWindowInMinutes
MAX_INPUT_CHARS: Final = 8192  # Scheduler's limit for a target's Input
DEFAULT_TIME_ZONE: Final = "UTC"  # Scheduler's, when a schedule names none

NAME_PATTERN: Final = re.compile(r"[0-9A-Za-z_.-]{1,64}")
RATE: Final = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
CRON: Final = re.compile(r"cron\((.+)\)")
AT: Final = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
CRON_FIELD: Final = re.compile(r"[0-9A-Za-z*?,/#-]+")


# --- the input -------------------------------------------------------------------------------


def schedule_input(ids: Sequence[str], *, skip: bool | None) -> str:
    """The template's input, with these ids, and skipScheduleValidation only when given (None:
    the stack's DefaultSkipScheduleValidation applies at each run, as for the template's)."""
    body: dict[str, object] = {
        PORTFOLIO_IDS: list(ids),
        SCHEDULE_ARN: SCHEDULE_ARN_ATTRIBUTE,
        SCHEDULED_TIME: SCHEDULED_TIME_ATTRIBUTE,
    }
    if skip is not None:
        body[SKIP_SCHEDULE_VALIDATION] = skip
    return json.dumps(body)


def input_too_long(text: str) -> str | None:
    """Why Scheduler would refuse this input, or None."""
    if len(text) <= MAX_INPUT_CHARS:
        return None
    return (
        f"the schedule's input would be {len(text)} characters, Scheduler takes at most "
        f"{MAX_INPUT_CHARS}: split the ids across schedules"
    )


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
