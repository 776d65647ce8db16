"""Starts MiniStack, with the one fix the harness cannot make through its API: run by MiniStack's
own interpreter (.venv/tools/ministack), by path, never imported by the project's code.

MiniStack 1.5.33's Scheduler passes a schedule's Input to its target verbatim. AWS fills in the
context attributes first (`<aws.scheduler.schedule-arn>`, `<aws.scheduler.scheduled-time>`,
`<aws.scheduler.execution-id>`, `<aws.scheduler.attempt-number>`: "EventBridge Scheduler
replaces them when it invokes the target"). The function keys a scheduled delivery by the
schedule's ARN and scheduled time, so with the placeholders left in, every run of every schedule
would be one delivery, and the guard would skip each run after the first. This wraps the
EventBridge dispatch that MiniStack's Scheduler calls, and fills them in as AWS does, for
Scheduler's firings only (their event's source is aws.scheduler and the "rule" is a schedule).

Everything else MiniStack does is left as it is: the other gaps are worked around through its API
(local/aws/deploy.py), and written down in docs/development.md.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# The version these fixes were made for; another one is refused (its internals may have moved).
MINISTACK_VERSION = "1.5.33"


def _filled(text: str, schedule: dict[str, Any], event: dict[str, Any]) -> str:
    values = {
        "<aws.scheduler.schedule-arn>": str(schedule.get("Arn", "")),
        "<aws.scheduler.scheduled-time>": _scheduled_time(schedule, event),
        "<aws.scheduler.execution-id>": str(event.get("EventId", "")),
        "<aws.scheduler.attempt-number>": "1",
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _scheduled_time(schedule: dict[str, Any], event: dict[str, Any]) -> str:
    """When the run was due, as AWS writes it (UTC, seconds): an at() schedule's own time; for
    rate() and cron(), the sweep that fired it (MiniStack sweeps every 10 s: up to 10 s late)."""
    expression = str(schedule.get("ScheduleExpression", ""))
    if expression.startswith("at(") and expression.endswith(")"):
        try:
            due = datetime.fromisoformat(expression[3:-1]).replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return due.strftime("%Y-%m-%dT%H:%M:%SZ")
    fired = datetime.fromtimestamp(float(event.get("Time") or 0), tz=UTC)
    return fired.strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_scheduler_context(invoke_target: Callable[..., Any]) -> Callable[..., Any]:
    def invoke(target: Any, event: Any, rule: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            isinstance(target, dict)
            and isinstance(event, dict)
            and isinstance(rule, dict)
            and event.get("Source") == "aws.scheduler"
            and "ScheduleExpression" in rule
            and isinstance(target.get("Input"), str)
        ):
            target = {**target, "Input": _filled(target["Input"], rule, event)}
        return invoke_target(target, event, rule, *args, **kwargs)

    return invoke


def main() -> None:
    version = importlib.import_module("importlib.metadata").version("ministack")
    if version != MINISTACK_VERSION:
        sys.exit(f"MiniStack {version}: local/aws/launcher.py fixes {MINISTACK_VERSION} only")
    eventbridge = importlib.import_module("ministack.services.eventbridge")
    # Scheduler looks it up on the module at each firing (services/scheduler.py, _tick_schedules).
    original = eventbridge._invoke_target
    setattr(eventbridge, "_invoke_target", _with_scheduler_context(original))  # noqa: B010
    importlib.import_module("ministack.app").main()


if __name__ == "__main__":
    main()
