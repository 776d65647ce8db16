"""Lambda's event shapes: tells an SQS batch from any other invocation and reads each input.

- an SQS event, {"Records": [{"eventSource": "aws:sqs", "body": "<json>", ...}, ...]}: each
  record's body is one input, carried by the message (its id is the delivery id);
- anything else (EventBridge Scheduler, a rule target, a bus event, a direct invocation, an
  on-failure destination record) is one input itself.
What an input looks like inside is the trigger-input contract (domain/trigger_input.py).
Nothing here raises anything but InvalidInputError.
"""

from __future__ import annotations

import json

from glider_trigger.domain import trigger_input
from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.models import FollowUp, InputSource, ParsedInput, SourceKind


def is_sqs_event(event: object) -> bool:
    """Lambda's SQS event: {"Records": [{"eventSource": "aws:sqs", ...}, ...]}."""
    if not isinstance(event, dict):
        return False
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def parse_event(event: object, *, default_skip: bool) -> ParsedInput:
    """Parse a non-SQS invocation payload (schedule, rule, bus event, direct, destination)."""
    return trigger_input.parse(event, default_skip=default_skip, transport=None)


def parse_sqs_body(body: object, *, message_id: str, default_skip: bool) -> ParsedInput | FollowUp:
    """Parse one SQS record's body (a JSON string holding any supported shape, or one of the
    function's follow-up messages, whatever queue it came through)."""
    if not isinstance(body, str):
        raise InvalidInputError("SQS message body is not a string")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"SQS message body is not valid JSON: {exc}") from exc
    if trigger_input.is_follow_up(payload):
        return trigger_input.parse_follow_up(payload)
    source = InputSource(SourceKind.SQS, delivery_id=message_id, dedupe_key=f"sqs:{message_id}")
    return trigger_input.parse(payload, default_skip=default_skip, transport=source)
