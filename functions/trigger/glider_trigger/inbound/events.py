"""Lambda's event shapes: tells an SQS batch from any other invocation and reads each input.

- an SQS event, {"Records": [{"eventSource": "aws:sqs", "body": "<json>", ...}, ...]}: each
  record's body is one input, carried by the message (its id is the delivery id), of the kind
  its queue takes (inbound/queues.py): a trigger input from the work queue (or any queue but
  the follow-up queue), one of the function's follow-ups from the follow-up queue;
- anything else (EventBridge Scheduler, a rule target, a bus event, a direct invocation, an
  on-failure destination record) is one input itself.
What an input looks like inside is the trigger-input contract (domain/trigger_input.py).
Nothing here raises anything but InvalidInputError.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from glider_trigger.domain import trigger_input
from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.models import FollowUp, InputSource, ParsedInput, SourceKind
from glider_trigger.inbound.sqs_batch import SqsRecord


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


def source_of_event(event: object) -> InputSource:
    """Where a non-SQS invocation payload that is not an input came from (its letter's source)."""
    return trigger_input.source_of(event)


def work_queue_parser(*, default_skip: bool) -> Callable[[SqsRecord], ParsedInput]:
    """How the work queue's records (and any queue's but the follow-up queue's) are read."""
    return lambda record: parse_sqs_body(
        record.body, message_id=record.message.message_id, default_skip=default_skip
    )


def follow_up_queue_parser(record: SqsRecord) -> FollowUp:
    """How the follow-up queue's records are read: the follow-up queue is no second way to
    trigger, and a follow-up is followed only from the follow-up queue."""
    return parse_follow_up_body(record.body)


def parse_sqs_body(body: object, *, message_id: str, default_skip: bool) -> ParsedInput:
    """Parse a work-queue record's body (a JSON string holding any supported input shape)."""
    payload = _json_body(body)
    if trigger_input.is_follow_up(payload):
        raise InvalidInputError(
            "a follow-up body on a queue other than the follow-up queue: follow-ups are taken "
            "only from the follow-up queue (FOLLOW_UP_QUEUE_URL); replay one there"
        )
    source = InputSource(SourceKind.SQS, delivery_id=message_id, dedupe_key=f"sqs:{message_id}")
    return trigger_input.parse(payload, default_skip=default_skip, transport=source)


def parse_follow_up_body(body: object) -> FollowUp:
    """Parse a follow-up-queue record's body: one of the function's follow-ups, nothing else."""
    payload = _json_body(body)
    if not trigger_input.is_follow_up(payload):
        raise InvalidInputError(
            f"a trigger body on the follow-up queue: it takes only the function's own "
            f'follow-ups ({{"{trigger_input.FOLLOW_UP}": ...}}); send triggers to the work queue'
        )
    return trigger_input.parse_follow_up(payload)


def _json_body(body: object) -> object:
    if not isinstance(body, str):
        raise InvalidInputError("SQS message body is not a string")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"SQS message body is not valid JSON: {exc}") from exc
