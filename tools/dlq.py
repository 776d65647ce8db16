"""Inspect, redrive and clean the trigger function's dead-letter queue.

    glider-trigger dlq list [--limit N] [--json]
    glider-trigger dlq redrive [--reason CODE] [--rate N] [--dry-run] [--yes]
    glider-trigger dlq discard [--reason CODE] [--message-id ID ...] [--older-than AGE]
                               [--archive PATH] [--yes]
    glider-trigger dlq restore ARCHIVE
    glider-trigger dlq status

The queues come from --dlq-url, --work-queue-url and --follow-up-queue-url, else from --stack NAME
(the stack's outputs), else from $DLQ_URL, $WORK_QUEUE_URL and $FOLLOW_UP_QUEUE_URL. Region,
credentials and endpoint come from the standard AWS environment (AWS_PROFILE, AWS_DEFAULT_REGION
or AWS_REGION, AWS_ENDPOINT_URL for a moto server): the same command works against an account and
against the local stack.

Each message goes back to the queue that takes its kind of body (the function refuses the other
kind): a trigger input to the work queue, one of the function's follow-ups to the follow-up queue.
A follow-up is known by its body, read by the function's own parser; one that the follow-up
queue's redrive moved here carries no attribute, and is listed with the reason
FOLLOW_UP_NOT_FINISHED, its portfolio and its rebalance.

`redrive` without --reason moves the follow-ups first, one by one, then starts an SQS message move
task for the rest (everything else, server side, to the work queue); `redrive --reason CODE` moves
only the messages of one reason or failure class, one by one: send to the destination queue first,
delete from the DLQ after, so a failure can duplicate but never lose one.

`list` shows one row per letter, oldest first, its DETAIL wrapped (never clipped; whole in
--json), and collapses duplicates into one row with a COUNT: letters of one portfolio, one
delivery (the deliveryKey or idempotencyKey in the body, a follow-up's rebalance) and one reason,
which a Lambda retry or an SQS redelivery of that delivery writes again.

`discard` deletes the letters that match every option given (--reason as redrive's, --message-id,
--older-than); without --yes it only says which would go. With --yes each letter is received,
appended to the archive (one JSON object a line: messageId, body, attributes, messageAttributes,
sentTimestamp) and synced to disk, and only then deleted by its receipt handle: nothing is gone
beyond recovery: `restore ARCHIVE` sends them back to the DLQ, body and attributes as they were.

Before a replay, `redrive` checks the guard's memory: the function remembers what a delivery
triggered for IDEMPOTENCY_TTL_SECONDS, and a replayed message may wait in the work queue for its
whole retention. A letter older than the difference may be processed after the guard forgot its
delivery's success, and trigger that portfolio twice: `redrive` warns about it (each such letter
with --reason; the queue's retention without). The memory comes from --guard-seconds, else the
stack's IdempotencyTtlSeconds parameter (--stack), else $IDEMPOTENCY_TTL_SECONDS, else the
function's default.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shutil
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.models import FollowUp, SourceKind
from glider_trigger.domain.trigger_input import (
    DELIVERY_KEY_FIELD,
    IDEMPOTENCY_KEY,
    is_follow_up,
    iso_time,
    listed_ids,
    parse_follow_up,
    unwrap,
)
from glider_trigger.settings import Settings
from tools.base import (
    EXIT_ERROR,
    EXIT_OK,
    ToolError,
    UsageError,
    describe,
    positive_int,
    prog,
    run_main,
    table,
)
from tools.common import aws_for, queue_attributes, retention_seconds

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        ListMessageMoveTasksResultEntryTypeDef,
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

PROG: Final = prog("dlq")

# Received messages stay invisible while a command scans the queue (so that each receive brings
# messages not seen yet) and are made visible again as soon as it is done: `list` hides nothing
# for longer than it runs, nor, should it die, for more than these seconds.
LIST_HOLD_SECONDS: Final = 5
# `redrive --reason` holds what it leaves in place for as long as the whole run should take
# (a minute, plus the DLQ's depth at the given rate), at most SQS's 12 hours.
REDRIVE_HOLD_SECONDS: Final = 60
MAX_HOLD_SECONDS: Final = 12 * 3600
UNRATED_SENDS_PER_SECOND: Final = 20  # a cautious guess at send + delete without --rate
AGE_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A long poll asks every SQS server, so an empty answer means nothing is left to receive; a short
# poll of a small queue can come back empty while messages remain.
RECEIVE_WAIT_SECONDS = 1
MAX_RATE: Final = 500  # StartMessageMoveTask's limit for MaxNumberOfMessagesPerSecond
DEFAULT_LIST_LIMIT: Final = 100
SQS_BATCH: Final = 10
UNPARSABLE: Final = "(unparsable)"
# A follow-up the follow-up queue's redrive moved here (no attribute of the function's says why):
# the function could not settle it within the queue's maxReceiveCount receives.
FOLLOW_UP_NOT_FINISHED: Final = "FOLLOW_UP_NOT_FINISHED"
_UNSUPPORTED_CODES: Final = frozenset(
    {"InvalidAction", "UnsupportedOperation", "NotImplemented", "InternalFailure"}
)

EXAMPLES = f"""\
examples:
  {PROG} list --stack glider-rebalance-trigger
  {PROG} list --json --limit 500 > dlq.jsonl
  {PROG} redrive --reason RATE_LIMITED --rate 5 --dry-run
  {PROG} redrive --reason RATE_LIMITED --rate 5
  {PROG} redrive --reason transient --yes
  {PROG} redrive --rate 10        (every message, with an SQS message move task)
  {PROG} discard --reason NOT_FOUND                (dry run: which letters would go)
  {PROG} discard --reason NOT_FOUND --older-than 3d --yes --archive not-found.jsonl
  {PROG} discard --message-id 5f0c...e1 --message-id 9a41...07 --yes
  {PROG} restore not-found.jsonl                   (the archived letters back into the DLQ)
  {PROG} status

  against a moto server (the local stack):
  AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_DEFAULT_REGION=us-east-1 \\
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
  DLQ_URL=... WORK_QUEUE_URL=... FOLLOW_UP_QUEUE_URL=... {PROG} list

--reason matches the REASON column of `list` (the function's reason attribute, else the ERROR_CODE
of a Scheduler or EventBridge dead letter, else FOLLOW_UP_NOT_FINISHED for a follow-up the
follow-up queue redrove) or the CLASS column, ignoring case. A follow-up goes back to the
follow-up queue, everything else to the work queue. Moving a message replays it: it can trigger a
real rebalance, hence the confirmation (skip it with --yes).
exit status: 0 done, 1 AWS error or aborted, 2 usage error.
"""

# Sleep used by the rate limiter; a module attribute so tests can observe it.
_sleep = time.sleep


class Destination(StrEnum):
    """The queue a DLQ message goes back to: the one that takes its kind of body."""

    WORK_QUEUE = "work queue"  # trigger inputs
    FOLLOW_UP_QUEUE = "follow-up queue"  # the function's follow-ups


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One DLQ message as `list` shows it."""

    message_id: str
    portfolio: str
    reason: str | None
    failure_class: str | None
    http_status: str | None
    api_error_code: str | None
    attempts: str | None
    age_seconds: float | None
    source: str | None
    detail: str | None
    retry_at: str | None
    sent_ms: int | None
    body: str
    follow_up: FollowUp | None = None  # the body is one of the function's follow-ups
    source_queue: str | None = None  # DeadLetterQueueSourceArn: the queue SQS redrove it from
    receives: int | None = None  # SQS's receives of it before this command's own
    delivery: str | None = None  # the delivery the letter belongs to (see delivery_of)

    @property
    def age(self) -> str:
        return human_age(self.age_seconds)

    @property
    def destination(self) -> Destination:
        return Destination.FOLLOW_UP_QUEUE if self.follow_up else Destination.WORK_QUEUE

    @property
    def same_letter(self) -> tuple[str, str, str]:
        """What duplicate letters share: one portfolio of one delivery, dead-lettered for one
        reason (a Lambda retry or an SQS redelivery of that delivery writes it again). A letter
        naming no delivery is a duplicate only of the very same body."""
        return (self.portfolio, self.reason or "-", self.delivery or f"body:{self.body}")

    def cells(self, *, count: int = 1) -> list[str]:
        values = [
            self.message_id,
            self.portfolio,
            self.reason,
            self.failure_class,
            self.http_status,
            self.api_error_code,
            self.attempts,
            None if self.receives is None else str(self.receives),
            self.age,
            str(count),
            self.source,
        ]
        return [value or "-" for value in values]

    def as_json(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "portfolio": self.portfolio,
            "reason": self.reason,
            "class": self.failure_class,
            "httpStatus": _number(self.http_status),
            "apiErrorCode": self.api_error_code,
            "attempts": _number(self.attempts),
            "age": self.age,
            "ageSeconds": None if self.age_seconds is None else int(self.age_seconds),
            "source": self.source,
            "detail": self.detail,
            "retryAt": self.retry_at,
            "rebalanceId": self.follow_up.rebalance_id if self.follow_up else None,
            "sourceQueue": self.source_queue,
            "receives": self.receives,
            "deliveryKey": self.delivery,
            "destination": self.destination.value,
            "body": self.body,
        }

    def matches(self, code: str) -> bool:
        wanted = code.casefold()
        return any(
            value and value.casefold() == wanted for value in (self.reason, self.failure_class)
        )


HEADERS: Final = [
    "MESSAGE ID",
    "PORTFOLIO",
    "REASON",
    "CLASS",
    "HTTP",
    "API CODE",
    "ATTEMPTS",
    "RECEIVES",
    "AGE",
    "COUNT",
    "SOURCE",
    "DETAIL",
]
# DETAIL, the last column, wraps to what is left of the terminal's width, at least this wide.
MIN_DETAIL_WIDTH: Final = 40
DEFAULT_TERMINAL_WIDTH: Final = 160  # when the output is no terminal (a pipe, a file)


# A restored letter is a new message: its first send is kept here (ms since the epoch), so that
# its age, and redrive's check against the guard's memory, count from when it was first sent.
ORIGINAL_SENT: Final = "originalSentTimestamp"
MAX_MESSAGE_ATTRIBUTES: Final = 10  # SQS's limit per message


def to_row(message: MessageTypeDef, *, now: float) -> Row:
    attributes = {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }
    body = message.get("Body", "")
    payload, envelope = read_body(body)
    system = message.get("Attributes", {})
    sent = attributes.get(ORIGINAL_SENT) or system.get("SentTimestamp", "")
    sent_ms = int(sent) if sent.isdigit() else None
    received = system.get("ApproximateReceiveCount", "")
    source_queue = system.get("DeadLetterQueueSourceArn") or None
    follow_up = follow_up_of(payload)
    # Scheduler and EventBridge dead letters carry ERROR_CODE/RETRY_ATTEMPTS of their own; a
    # follow-up the follow-up queue redrove carries nothing.
    reason = attributes.get("reason") or attributes.get("ERROR_CODE")
    detail = attributes.get("detail") or attributes.get("ERROR_MESSAGE")
    if follow_up is not None and not reason:
        reason = FOLLOW_UP_NOT_FINISHED
        detail = detail or not_finished(follow_up, source_queue)
    return Row(
        message_id=message.get("MessageId", ""),
        portfolio=follow_up.portfolio_id if follow_up else portfolio_of(payload),
        reason=reason,
        failure_class=attributes.get("failureClass"),
        http_status=attributes.get("httpStatus"),
        api_error_code=attributes.get("apiErrorCode"),
        attempts=attributes.get("attempts") or attributes.get("RETRY_ATTEMPTS"),
        age_seconds=None if sent_ms is None else max(0.0, now - sent_ms / 1000),
        source=source_of(attributes, envelope) or follow_up_source(follow_up),
        detail=detail,
        retry_at=attributes.get("retryAt"),
        sent_ms=sent_ms,
        body=body,
        follow_up=follow_up,
        source_queue=source_queue,
        # This command's own receive is counted already: the receives before it.
        receives=max(0, int(received) - 1) if received.isdigit() else None,
        delivery=delivery_of(payload, follow_up),
    )


def delivery_of(payload: object, follow_up: FollowUp | None) -> str | None:
    """The delivery a letter belongs to: a follow-up's rebalance, else the function's own
    deliveryKey in the body (every failed portfolio's letter carries it), else an upstream's
    idempotencyKey."""
    if follow_up is not None:
        return follow_up_source(follow_up)
    if not isinstance(payload, dict):
        return None
    for field_name in (DELIVERY_KEY_FIELD, IDEMPOTENCY_KEY):
        value = payload.get(field_name)
        if isinstance(value, str) and value:
            return value
    return None


def follow_up_of(payload: object) -> FollowUp | None:
    """The follow-up a body holds, read as the function reads one; None for any other body
    (a follow-up the function would refuse is no follow-up to replay)."""
    if not is_follow_up(payload):
        return None
    try:
        return parse_follow_up(payload)
    except InvalidInputError:
        return None


def follow_up_source(follow_up: FollowUp | None) -> str | None:
    """As the function names a follow-up's source in its letters: follow-up:<rebalance id>."""
    return f"{SourceKind.FOLLOW_UP.value}:{follow_up.rebalance_id}" if follow_up else None


def not_finished(follow_up: FollowUp, source_queue: str | None) -> str:
    where = f" {source_queue.rsplit(':', 1)[-1]}" if source_queue else ""
    return (
        f"follow-up {follow_up.number} of rebalance {follow_up.rebalance_id} (triggered "
        f"{iso_time(follow_up.triggered_at)}): not settled within the receives of the "
        f"follow-up queue{where}, whose redrive moved it here; replay it to the follow-up queue"
    )


def read_body(body: str) -> tuple[object, str | None]:
    """The body as JSON (None if it is not), and the outermost envelope it came in, if any,
    as the trigger-input contract unwraps it."""
    try:
        payload: object = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    envelopes = unwrap(payload).envelopes
    if not envelopes:
        return payload, None
    outer = envelopes[0]
    delivery_id = outer.delivery_id
    kind = outer.kind.value
    return payload, f"{kind}:{delivery_id}" if isinstance(
        delivery_id, str
    ) and delivery_id else kind


def portfolio_of(payload: object) -> str:
    ids = listed_ids(payload)
    text = ",".join(i if isinstance(i, str) else json.dumps(i) for i in ids)
    return text or UNPARSABLE


def source_of(attributes: dict[str, str], envelope: str | None) -> str | None:
    if attributes.get("source"):
        return attributes["source"]
    if attributes.get("SCHEDULE_ARN"):
        return f"schedule:{attributes['SCHEDULE_ARN']}"
    if attributes.get("RULE_ARN"):
        return f"rule:{attributes['RULE_ARN']}"
    return envelope


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _number(value: str | None) -> int | float | str | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


# --- queues ----------------------------------------------------------------------------------


@dataclass
class Queues:
    sqs: SQSClient
    dlq_url: str
    work_queue_url: str | None
    origin: str  # where the URLs came from, for messages
    arns: dict[str, str] = field(default_factory=dict)  # URL -> ARN, from the stack's outputs
    guard_seconds: int = Settings.idempotency_ttl_seconds  # how long the guard remembers
    follow_up_queue_url: str | None = None

    def attributes(self, url: str, *names: QueueAttributeNameType) -> dict[str, str]:
        return queue_attributes(self.sqs, url, *names)

    def retention(self, url: str) -> int:
        """The queue's MessageRetentionPeriod, in seconds."""
        return retention_seconds(self.sqs, url)

    def safe_age_seconds(self) -> int:
        """The oldest a letter may be for its replay to stay inside the guard's memory."""
        return self.guard_seconds - self.retention(self.work_queue())

    def arn(self, url: str) -> str:
        if url not in self.arns:
            self.arns[url] = self.attributes(url, "QueueArn")["QueueArn"]
        return self.arns[url]

    def work_queue(self) -> str:
        if not self.work_queue_url:
            raise UsageError(
                f"no work queue ({self.origin}): pass --work-queue-url URL or --stack NAME, "
                "or set WORK_QUEUE_URL"
            )
        return self.work_queue_url

    def follow_up_queue(self) -> str:
        if not self.follow_up_queue_url:
            raise UsageError(
                f"no follow-up queue ({self.origin}) to replay follow-ups to: pass "
                "--follow-up-queue-url URL or --stack NAME, or set FOLLOW_UP_QUEUE_URL"
            )
        return self.follow_up_queue_url

    def url_of(self, destination: Destination) -> str:
        if destination is Destination.FOLLOW_UP_QUEUE:
            return self.follow_up_queue()
        return self.work_queue()

    def depth(self, url: str) -> int:
        """Approximate number of messages, visible or not (and a check that the queue exists)."""
        attributes = self.attributes(
            url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
        )
        return sum(int(value) for value in attributes.values())


def resolve_queues(
    args: argparse.Namespace, sqs: SQSClient, cloudformation: Callable[[], CloudFormationClient]
) -> Queues:
    stack: str | None = getattr(args, "stack", None)
    queues = _queues(args, sqs, cloudformation, stack)
    guard: int | None = getattr(args, "guard_seconds", None)
    if guard is None and stack:
        guard = _number_parameter(cloudformation(), stack, "IdempotencyTtlSeconds")
    if guard is None and os.environ.get("IDEMPOTENCY_TTL_SECONDS", "").strip().isdigit():
        guard = int(os.environ["IDEMPOTENCY_TTL_SECONDS"])
    if guard is not None:
        queues.guard_seconds = guard
    return queues


def _queues(
    args: argparse.Namespace,
    sqs: SQSClient,
    cloudformation: Callable[[], CloudFormationClient],
    stack: str | None,
) -> Queues:
    dlq_flag: str | None = getattr(args, "dlq_url", None)
    work_flag: str | None = getattr(args, "work_queue_url", None)
    follow_up_flag: str | None = getattr(args, "follow_up_queue_url", None)
    if stack:
        outputs = stack_outputs(cloudformation(), stack)
        dlq_url = dlq_flag or outputs.get("DeadLetterQueueUrl")
        work_url = work_flag or outputs.get("WorkQueueUrl")
        if not dlq_url:
            raise ToolError(f"stack {stack} has no output DeadLetterQueueUrl")
        queues = Queues(
            sqs,
            dlq_url,
            work_url,
            origin=f"stack {stack}",
            follow_up_queue_url=follow_up_flag or outputs.get("FollowUpQueueUrl"),
        )
        for url_key, arn_key in (
            ("DeadLetterQueueUrl", "DeadLetterQueueArn"),
            ("WorkQueueUrl", "WorkQueueArn"),
        ):
            if outputs.get(url_key) and outputs.get(arn_key):
                queues.arns[outputs[url_key]] = outputs[arn_key]
        return queues
    dlq_url = dlq_flag or os.environ.get("DLQ_URL")
    if not dlq_url:
        raise UsageError("no DLQ: pass --dlq-url URL or --stack NAME, or set DLQ_URL")
    work_url = work_flag or os.environ.get("WORK_QUEUE_URL") or None
    return Queues(
        sqs,
        dlq_url,
        work_url,
        origin="options and environment",
        follow_up_queue_url=follow_up_flag or os.environ.get("FOLLOW_UP_QUEUE_URL") or None,
    )


def stack_outputs(cloudformation: CloudFormationClient, stack: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"stack {stack}: {describe(exc)}") from exc
    return {
        output["OutputKey"]: output["OutputValue"]
        for found in stacks[:1]
        for output in found.get("Outputs", [])
        if "OutputKey" in output and "OutputValue" in output
    }


def _number_parameter(cloudformation: CloudFormationClient, stack: str, key: str) -> int | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"stack {stack}: {describe(exc)}") from exc
    for found in stacks[:1]:
        for parameter in found.get("Parameters", []):
            value = parameter.get("ParameterValue", "")
            if parameter.get("ParameterKey") == key and value.isdigit():
                return int(value)
    return None


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


# --- receiving without consuming -------------------------------------------------------------


class Scan:
    """Each message of a queue once: received, held invisible, released by `release()`.

    Holding is what lets the scan move on: a message made visible at once would be received
    again by the next call (moto returns the oldest first; SQS samples), so a queue with more
    than 10 messages could never be read past its first batch. Stops on an empty receive, or
    when a receive brings back only messages already seen (their hold ran out).
    """

    def __init__(self, sqs: SQSClient, queue_url: str, *, hold_seconds: int) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._hold_seconds = hold_seconds
        self._seen: set[str] = set()
        self._held: dict[str, str] = {}  # message id -> its latest receipt handle

    def messages(self) -> Iterator[MessageTypeDef]:
        while True:
            try:
                batch = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=SQS_BATCH,
                    VisibilityTimeout=self._hold_seconds,
                    WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                    MessageAttributeNames=["All"],
                    # All: what `discard` archives. Among them DeadLetterQueueSourceArn, set by
                    # SQS on what a queue's redrive moved here.
                    MessageSystemAttributeNames=["All"],
                ).get("Messages", [])
            except (ClientError, BotoCoreError) as exc:
                raise ToolError(f"queue {self._queue_url}: {describe(exc)}") from exc
            fresh = []
            for message in batch:
                message_id = message.get("MessageId", "")
                self._held[message_id] = message.get("ReceiptHandle", "")
                if message_id not in self._seen:
                    self._seen.add(message_id)
                    fresh.append(message)
            if not fresh:
                return
            yield from fresh

    def forget(self, message_id: str) -> None:
        """The message is gone (deleted): nothing to release."""
        self._held.pop(message_id, None)

    def release(self) -> None:
        """Make every held message visible again; warns about any that stay hidden."""
        handles = list(self._held.values())
        self._held.clear()
        stuck = 0
        for start in range(0, len(handles), SQS_BATCH):
            chunk = handles[start : start + SQS_BATCH]
            try:
                response = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for index, handle in enumerate(chunk)
                    ],
                )
            except (ClientError, BotoCoreError):
                stuck += len(chunk)
            else:
                stuck += len(response.get("Failed", []))
        if stuck:
            print(
                f"warning: {stuck} message(s) could not be made visible again at once; "
                f"they will be within {self._hold_seconds} s",
                file=sys.stderr,
            )


# --- commands --------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, queues: Queues) -> int:
    depth = queues.depth(queues.dlq_url)
    rows = read_rows(queues.sqs, queues.dlq_url, limit=args.limit)
    if args.json:
        duplicates = Counter(row.same_letter for row in rows)
        for row in rows:
            listed = row.as_json() | {"count": duplicates[row.same_letter]}
            print(json.dumps(listed, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print(f"The DLQ is empty ({queues.dlq_url}).")
        return EXIT_OK
    groups = collapse(rows)
    for line in wrapped_table(groups, width=terminal_width()):
        print(line)
    more = f"; --limit {args.limit} reached" if len(rows) >= args.limit else ""
    shown = f" in {len(groups)} row(s)" if len(groups) < len(rows) else ""
    print(f"\n{len(rows)} message(s) listed{shown}, ~{depth} in the DLQ{more}.")
    counts = Counter(row.reason or "-" for row in rows)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    print("By reason: " + ", ".join(f"{reason} {count}" for reason, count in ranked))
    return EXIT_OK


def read_rows(sqs: SQSClient, dlq_url: str, *, limit: int | None = None) -> list[Row]:
    """The DLQ's letters, oldest first, consuming nothing (each is visible again at once)."""
    scan = Scan(sqs, dlq_url, hold_seconds=LIST_HOLD_SECONDS)
    now = time.time()
    rows: list[Row] = []
    try:
        for message in scan.messages():
            rows.append(to_row(message, now=now))
            if limit is not None and len(rows) >= limit:
                break
    finally:
        scan.release()
    return sorted(rows, key=lambda row: (row.sent_ms is None, row.sent_ms or 0))


@dataclass(frozen=True)
class Group:
    """Duplicate letters (Row.same_letter) as one row: the oldest stands for them all."""

    first: Row
    count: int


def collapse(rows: Sequence[Row]) -> list[Group]:
    letters: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        letters.setdefault(row.same_letter, []).append(row)
    return [Group(same[0], len(same)) for same in letters.values()]


def terminal_width() -> int:
    return shutil.get_terminal_size((DEFAULT_TERMINAL_WIDTH, 24)).columns


def wrapped_table(groups: Sequence[Group], *, width: int) -> list[str]:
    """The table with every cell whole: DETAIL, the last column, wrapped onto lines of its own
    width (what the other columns leave of `width`, at least MIN_DETAIL_WIDTH)."""
    cells = [group.first.cells(count=group.count) for group in groups]
    others = sum(
        max([len(HEADERS[i]), *(len(row[i]) for row in cells)]) + 2 for i in range(len(cells[0]))
    )
    detail_width = max(MIN_DETAIL_WIDTH, width - others)
    lines: list[list[str]] = []
    blank = [""] * len(cells[0])
    for group, row in zip(groups, cells, strict=True):
        detail = textwrap.wrap(
            group.first.detail or "-", detail_width, break_long_words=True, break_on_hyphens=False
        ) or ["-"]
        lines.append([*row, detail[0]])
        lines.extend([*blank, more] for more in detail[1:])
    return table(HEADERS, lines)


def cmd_redrive(args: argparse.Namespace, queues: Queues) -> int:
    if args.reason or args.portfolio:
        return _redrive_selected(args, queues)
    return _redrive_all(args, queues)


def _redrive_all(args: argparse.Namespace, queues: Queues) -> int:
    """Every message: the follow-ups one by one to the follow-up queue (a move task has one
    destination, and the work queue refuses them), then the rest server side with
    StartMessageMoveTask."""
    source_arn = queues.arn(queues.dlq_url)
    destination_arn = queues.arn(queues.work_queue())
    depth = queues.depth(queues.dlq_url)
    follow_ups = count(queues, is_follow_up_row)
    if follow_ups:
        queues.depth(queues.follow_up_queue())  # named, and there, before anything moves
    safe = queues.safe_age_seconds()
    if queues.retention(queues.dlq_url) > safe:
        warn(
            f"the guard remembers a delivery for {human_age(queues.guard_seconds)} and the work "
            f"queue may hold a replay for {human_age(queues.guard_seconds - safe)}: letters "
            f"older than {human_age(max(0, safe))} may trigger a portfolio twice. Replay them "
            f"with --reason to see which, or delete them."
        )
    pace = f"at most {args.rate}/s" if args.rate else "at SQS's own pace"
    task = f"message(s) from {source_arn} to {destination_arn}, {pace}"
    if follow_ups:
        plan = (
            f"{follow_ups} follow-up(s) to the follow-up queue {queues.follow_up_queue()} one by "
            f"one, then start a message move task moving the other ~{max(0, depth - follow_ups)} "
            f"{task}"
        )
    else:
        plan = f"start a message move task moving all ~{depth} {task}"
    if args.dry_run:
        print(f"Dry run: would {plan}.")
        return EXIT_OK
    if not args.yes and not confirm(f"Move: {plan}? Each can trigger a real rebalance."):
        print("Aborted: nothing moved.")
        return EXIT_ERROR
    if follow_ups:
        moved, _, _ = replay(args, queues, is_follow_up_row, depth=depth)
        print(f"Moved {moved} follow-up(s) to the follow-up queue.")
    try:
        if args.rate:
            response = queues.sqs.start_message_move_task(
                SourceArn=source_arn,
                DestinationArn=destination_arn,
                MaxNumberOfMessagesPerSecond=args.rate,
            )
        else:
            response = queues.sqs.start_message_move_task(
                SourceArn=source_arn, DestinationArn=destination_arn
            )
    except (ClientError, BotoCoreError) as exc:
        raise move_task_error(exc) from exc
    print(f"Started message move task {response['TaskHandle']}")
    print(f"Follow it with: {PROG} status")
    return EXIT_OK


def _redrive_selected(args: argparse.Namespace, queues: Queues) -> int:
    """The messages of one reason or class, or of one portfolio: send each to its queue, then
    delete it."""

    def selected(row: Row) -> bool:
        reason = args.reason is None or row.matches(args.reason)
        return reason and (args.portfolio is None or row.portfolio == args.portfolio)

    work_url = queues.work_queue()
    queues.depth(work_url)  # fail before touching the DLQ if the work queue is not there
    if queues.follow_up_queue_url:
        queues.depth(queues.follow_up_queue_url)
    elif count(queues, lambda row: selected(row) and is_follow_up_row(row)):
        queues.follow_up_queue()  # a follow-up has nowhere to go: nothing moves
    depth = queues.depth(queues.dlq_url)
    chosen = " and ".join(
        what
        for what in (
            f"reason or class {args.reason}" if args.reason else "",
            f"portfolio {args.portfolio}" if args.portfolio else "",
        )
        if what
    )
    pace = f" at most {args.rate}/s" if args.rate else ""
    onto = f"the work queue {work_url}"
    if queues.follow_up_queue_url:
        onto += f" (follow-ups onto the follow-up queue {queues.follow_up_queue_url})"
    if (
        not args.dry_run
        and not args.yes
        and not confirm(
            f"Replay the {count(queues, selected)} DLQ message(s) of {chosen} (of ~{depth} in "
            f"the DLQ) onto {onto}{pace}? Each can trigger a real rebalance."
        )
    ):
        print("Aborted: nothing moved.")
        return EXIT_ERROR
    moved, skipped, newer = replay(args, queues, selected, depth=depth)
    verb = "would move" if args.dry_run else "moved"
    later = f", {newer} newer than the start of this run left in place" if newer else ""
    print(f"{verb.capitalize()} {moved}, skipped {skipped} not of {chosen}{later}.")
    return EXIT_OK


def is_follow_up_row(row: Row) -> bool:
    return row.follow_up is not None


def count(queues: Queues, selected: Callable[[Row], bool]) -> int:
    """How many DLQ messages are selected, consuming nothing (as `list` reads them)."""
    scan = Scan(queues.sqs, queues.dlq_url, hold_seconds=LIST_HOLD_SECONDS)
    now = time.time()
    try:
        return sum(1 for message in scan.messages() if selected(to_row(message, now=now)))
    finally:
        scan.release()


def replay(
    args: argparse.Namespace, queues: Queues, selected: Callable[[Row], bool], *, depth: int
) -> tuple[int, int, int]:
    """Each selected message to the queue that takes its kind of body, one by one, at most
    --rate a second (only printed with --dry-run); returns (moved, skipped, newer)."""
    # Only what was in the DLQ when the redrive began: a replay that fails again comes back as a
    # new message, which must not be replayed again and again by this same run.
    started_ms = int(time.time() * 1000)
    limiter = RateLimiter(args.rate)
    run_seconds = depth / (args.rate or UNRATED_SENDS_PER_SECOND)
    hold = min(MAX_HOLD_SECONDS, REDRIVE_HOLD_SECONDS + math.ceil(run_seconds))
    scan = Scan(queues.sqs, queues.dlq_url, hold_seconds=hold)
    verb = "would move" if args.dry_run else "moved"
    moved = skipped = newer = 0
    safe = queues.safe_age_seconds()
    try:
        for message in scan.messages():
            row = to_row(message, now=time.time())
            if not selected(row):
                skipped += 1
                continue
            if row.sent_ms is not None and row.sent_ms >= started_ms:
                newer += 1
                continue
            if row.age_seconds is not None and row.age_seconds > safe:
                risk = (
                    "its outcome may be reported again"
                    if row.follow_up
                    else "it may trigger a portfolio its delivery triggered"
                )
                warn(
                    f"{row.message_id} ({row.portfolio}) is {human_age(row.age_seconds)} old, "
                    f"beyond the guard's memory ({human_age(queues.guard_seconds)} less the "
                    f"work queue's retention): {risk}"
                )
            if not args.dry_run:
                limiter.wait()
                _move(queues, message, row.destination, moved=moved)
                scan.forget(row.message_id)
            moved += 1
            print(
                f"{verb}  {row.message_id}  {row.portfolio}  "
                f"{row.reason or row.failure_class}  to the {row.destination}"
            )
    finally:
        scan.release()
    return moved, skipped, newer


def _move(queues: Queues, message: MessageTypeDef, destination: Destination, *, moved: int) -> None:
    message_id = message.get("MessageId", "")
    try:
        # The body alone: it is the function's input. The attributes described the failure
        # being replayed; a replay that fails again gets fresh ones from the function.
        queues.sqs.send_message(
            QueueUrl=queues.url_of(destination), MessageBody=message.get("Body", "")
        )
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(
            f"moved {moved}, then stopped: sending message {message_id} to the {destination} "
            f"failed, it stays in the DLQ: {describe(exc)}"
        ) from exc
    try:
        queues.sqs.delete_message(
            QueueUrl=queues.dlq_url, ReceiptHandle=message.get("ReceiptHandle", "")
        )
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(
            f"moved {moved}, then stopped: message {message_id} was sent to the {destination} "
            f"but not deleted from the DLQ (delete it there, or it will be replayed twice): "
            f"{describe(exc)}"
        ) from exc


# --- discard ---------------------------------------------------------------------------------


def older_than(text: str) -> int:
    """--older-than: 90s, 30m, 2h, 3d (or bare seconds) as seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not match or int(match[1]) < 1:
        raise argparse.ArgumentTypeError(f"not an age like 30m, 2h or 3d: {text!r}")
    return int(match[1]) * AGE_UNITS[match[2] or "s"]


@dataclass(frozen=True)
class Selection:
    """What `discard` deletes: the letters that match every option given."""

    reason: str | None
    message_ids: frozenset[str]
    min_age_seconds: int | None

    def __call__(self, row: Row) -> bool:
        if self.reason is not None and not row.matches(self.reason):
            return False
        if self.message_ids and row.message_id not in self.message_ids:
            return False
        if self.min_age_seconds is not None:
            return row.age_seconds is not None and row.age_seconds > self.min_age_seconds
        return True

    def __str__(self) -> str:
        parts = []
        if self.reason is not None:
            parts.append(f"reason or class {self.reason}")
        if self.message_ids:
            parts.append(f"message id {', '.join(sorted(self.message_ids))}")
        if self.min_age_seconds is not None:
            parts.append(f"older than {human_age(self.min_age_seconds)}")
        return " and ".join(parts)


def archive_record(message: MessageTypeDef, queue_url: str) -> dict[str, Any]:
    """One archived letter: everything SQS gave, enough to send it again as it was."""
    attributes = dict(message.get("Attributes", {}))
    return {
        "messageId": message.get("MessageId", ""),
        "queueUrl": queue_url,
        "sentTimestamp": attributes.get("SentTimestamp"),
        "archivedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": {
            name: archived_value(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
    }


def archived_value(value: MessageAttributeValueOutputTypeDef) -> dict[str, str]:
    """A message attribute as JSON: its type and its value (a binary one in base64)."""
    kept = {"DataType": value.get("DataType", "String")}
    if "StringValue" in value:
        kept["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        kept["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return kept


@dataclass(frozen=True)
class Archived:
    """One letter of a `discard` archive, as restore sends it back."""

    message_id: str
    body: str
    attributes: dict[str, dict[str, str]]
    first_sent_ms: int | None  # SentTimestamp of its first send, if the archive kept it

    def restored_attributes(self) -> dict[str, MessageAttributeValueTypeDef]:
        """Its attributes, plus ORIGINAL_SENT where SQS's limit leaves room."""
        attributes = dict(self.attributes)
        if self.keeps_first_send and ORIGINAL_SENT not in attributes:
            attributes[ORIGINAL_SENT] = {
                "DataType": "Number",
                "StringValue": str(self.first_sent_ms),
            }
        return {name: restored_value(value) for name, value in attributes.items()}

    @property
    def keeps_first_send(self) -> bool:
        room = ORIGINAL_SENT in self.attributes or len(self.attributes) < MAX_MESSAGE_ATTRIBUTES
        return self.first_sent_ms is not None and room


def read_archive(path: Path) -> list[Archived]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ToolError(f"archive {path}: {exc.strerror or exc}") from exc
    letters = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            first_sent = str(record.get("sentTimestamp") or "")
            letters.append(
                Archived(
                    message_id=str(record.get("messageId", "?")),
                    body=record["body"],
                    attributes=dict(record.get("messageAttributes", {})),
                    first_sent_ms=int(first_sent) if first_sent.isdigit() else None,
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolError(f"{path}:{number}: not a letter `discard` archived ({exc})") from exc
    return letters


def cmd_restore(args: argparse.Namespace, queues: Queues) -> int:
    """Send each letter of an archive back to the DLQ as it was: its body and attributes."""
    path: Path = args.archive
    letters = read_archive(path)
    _warn_beyond_memory(letters, queues)
    for restored, letter in enumerate(letters):
        try:
            queues.sqs.send_message(
                QueueUrl=queues.dlq_url,
                MessageBody=letter.body,
                MessageAttributes=letter.restored_attributes(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(
                f"restored {restored} of {len(letters)} from {path}, then stopped: {describe(exc)}"
            ) from exc
    print(
        f"Restored {len(letters)} letter(s) from {path} to the DLQ {queues.dlq_url} (new "
        f"messages with new ids; their age counts from their first send, as `{ORIGINAL_SENT}`)."
    )
    younger = sum(1 for letter in letters if not letter.keeps_first_send)
    if younger:
        warn(
            f"{younger} letter(s) had no room for {ORIGINAL_SENT}: their age counts from now, "
            "and redrive cannot warn when they are older than the guard's memory (their first "
            f"send is in {path})"
        )
    return EXIT_OK


def _warn_beyond_memory(letters: Sequence[Archived], queues: Queues) -> None:
    """Each archived letter first sent longer ago than the guard's memory less the work queue's
    retention, named now: once restored, its age may count from now (no room for
    ORIGINAL_SENT), and redrive could no longer tell."""
    safe = queues.safe_age_seconds()
    now_ms = time.time() * 1000
    for letter in letters:
        if letter.first_sent_ms is None:
            continue
        age = (now_ms - letter.first_sent_ms) / 1000
        if age > safe:
            warn(
                f"{letter.message_id} was first sent {human_age(age)} ago, beyond the guard's "
                f"memory ({human_age(queues.guard_seconds)} less the work queue's retention): "
                "replayed, it may trigger a portfolio its delivery triggered"
            )


def restored_value(value: dict[str, str]) -> MessageAttributeValueTypeDef:
    if "BinaryValue" in value:
        return {
            "DataType": value["DataType"],
            "BinaryValue": base64.b64decode(value["BinaryValue"]),
        }
    return {"DataType": value["DataType"], "StringValue": value.get("StringValue", "")}


def default_archive(queues: Queues, stack: str | None) -> Path:
    name = stack or queues.dlq_url.rstrip("/").rsplit("/", 1)[-1]
    return Path(f"dlq-archive-{name}-{datetime.now(UTC):%Y%m%dT%H%M%S}.jsonl")


class Archive:
    """The JSON-lines file each letter is written to, and synced, before it is deleted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            try:
                self._file = self.path.open("a", encoding="utf-8")
            except OSError as exc:
                raise ToolError(f"archive {self.path}: {exc.strerror or exc}") from exc
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise ToolError(
                f"archive {self.path}: {exc.strerror or exc}; letter {record['messageId']} "
                "was not deleted"
            ) from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def cmd_discard(args: argparse.Namespace, queues: Queues) -> int:
    """Delete the selected letters, each archived first; a dry run without --yes."""
    selected = Selection(
        reason=args.reason,
        message_ids=frozenset(args.message_id or ()),
        min_age_seconds=args.older_than,
    )
    if not str(selected):
        raise UsageError("say what to discard: --reason CODE, --message-id ID or --older-than AGE")
    archive = Archive(args.archive or default_archive(queues, getattr(args, "stack", None)))
    started_ms = int(time.time() * 1000)
    hold = min(MAX_HOLD_SECONDS, REDRIVE_HOLD_SECONDS + queues.depth(queues.dlq_url))
    scan = Scan(queues.sqs, queues.dlq_url, hold_seconds=hold)
    verb = "discarded" if args.yes else "would discard"
    discarded = 0
    try:
        for message in scan.messages():
            row = to_row(message, now=time.time())
            if not selected(row) or (row.sent_ms is not None and row.sent_ms >= started_ms):
                continue
            if args.yes:
                archive.write(archive_record(message, queues.dlq_url))
                _delete(queues, message, discarded=discarded, archive=archive.path)
                scan.forget(row.message_id)
            discarded += 1
            print(
                f"{verb}  {row.message_id}  {row.portfolio}  "
                f"{row.reason or row.failure_class or '-'}  {row.age}"
            )
    finally:
        scan.release()
        archive.close()
    if not args.yes:
        print(
            f"Dry run: would discard {discarded} letter(s) with {selected}, each archived first "
            f"to {archive.path}. Add --yes to discard them."
        )
    elif discarded:
        print(f"Discarded {discarded} letter(s) with {selected}; archived to {archive.path}.")
    else:
        print(f"Discarded nothing: no letter with {selected}.")
    return EXIT_OK


def _delete(queues: Queues, message: MessageTypeDef, *, discarded: int, archive: Path) -> None:
    try:
        queues.sqs.delete_message(
            QueueUrl=queues.dlq_url, ReceiptHandle=message.get("ReceiptHandle", "")
        )
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(
            f"discarded {discarded}, then stopped: message {message.get('MessageId', '')} is "
            f"archived in {archive} but still in the DLQ: {describe(exc)}"
        ) from exc


def cmd_status(args: argparse.Namespace, queues: Queues) -> int:
    source_arn = queues.arn(queues.dlq_url)
    try:
        tasks = queues.sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
    except (ClientError, BotoCoreError) as exc:
        raise move_task_error(exc) from exc
    depth = queues.depth(queues.dlq_url)
    if not tasks:
        print(f"No message move tasks for {source_arn} (~{depth} message(s) in the DLQ).")
        return EXIT_OK
    headers = ["STATUS", "MOVED", "TO MOVE", "RATE", "STARTED", "DESTINATION", "FAILURE"]
    for line in table(headers, [_task_cells(task) for task in tasks]):
        print(line)
    print(f"\n~{depth} message(s) in the DLQ {source_arn}.")
    for task in tasks:
        if task.get("Status") == "RUNNING" and task.get("TaskHandle"):
            print(
                f"Running: {task['TaskHandle']} (cancel: aws sqs cancel-message-move-task "
                f"--task-handle {task['TaskHandle']})"
            )
    return EXIT_OK


def _task_cells(task: ListMessageMoveTasksResultEntryTypeDef) -> list[str]:
    started = task.get("StartedTimestamp")
    return [
        task.get("Status", "-"),
        str(task.get("ApproximateNumberOfMessagesMoved", "-")),
        str(task.get("ApproximateNumberOfMessagesToMove", "-")),
        str(task.get("MaxNumberOfMessagesPerSecond", "-")),
        datetime.fromtimestamp(started / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        if started
        else "-",
        task.get("DestinationArn", "(original sources)").rsplit(":", 1)[-1],
        task.get("FailureReason", "-"),
    ]


# --- helpers ---------------------------------------------------------------------------------


class RateLimiter:
    """At most `rate` calls a second: sleeps until each call's turn."""

    def __init__(self, rate: int | None) -> None:
        self._interval = 1 / rate if rate else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            _sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def move_task_error(exc: ClientError | BotoCoreError) -> ToolError:
    text = describe(exc)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code.isdigit() or code in _UNSUPPORTED_CODES:
            text += (
                " (this endpoint does not seem to implement SQS message move tasks; moto 5.2.5 "
                "and MiniStack 1.5.33 (make up) do not: there, use `redrive --reason CODE`)"
            )
    return ToolError(text)


def build_parser() -> argparse.ArgumentParser:
    # Queue options are accepted before or after the command; SUPPRESS keeps a command's parser
    # from overwriting a value given before it.
    queue_options = argparse.ArgumentParser(add_help=False)
    group = queue_options.add_argument_group(
        "queues (default: $DLQ_URL, $WORK_QUEUE_URL and $FOLLOW_UP_QUEUE_URL)"
    )
    group.add_argument("--dlq-url", metavar="URL", default=argparse.SUPPRESS)
    group.add_argument("--work-queue-url", metavar="URL", default=argparse.SUPPRESS)
    group.add_argument(
        "--follow-up-queue-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="where follow-ups are replayed to",
    )
    group.add_argument(
        "--stack",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="read the queues from this CloudFormation stack's outputs",
    )
    group.add_argument("--region", metavar="REGION", default=argparse.SUPPRESS, help="AWS region")
    group.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS, help="AWS profile")
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and redrive the trigger function's dead-letter queue.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[queue_options],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    listing = commands.add_parser(
        "list", parents=[queue_options], help="show the DLQ as a table, consuming nothing"
    )
    listing.add_argument(
        "--limit",
        type=positive_int(),
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=f"at most N messages (default {DEFAULT_LIST_LIMIT})",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    redrive = commands.add_parser(
        "redrive",
        parents=[queue_options],
        help="move messages back to the work queue, follow-ups to the follow-up queue (all: "
        "follow-ups one by one, then a message move task)",
    )
    redrive.add_argument(
        "--reason",
        metavar="CODE",
        help="only messages of this reason or class (RATE_LIMITED, transient, ...), one by one",
    )
    redrive.add_argument(
        "--portfolio",
        metavar="ID",
        help="only this portfolio's letters (with or without --reason), one by one",
    )
    redrive.add_argument(
        "--rate", type=positive_int(MAX_RATE), metavar="N", help="at most N messages a second"
    )
    redrive.add_argument("--dry-run", action="store_true", help="show what would move; move none")
    redrive.add_argument(
        "--guard-seconds",
        type=positive_int(),
        metavar="N",
        help="how long the function's guard remembers a delivery (IDEMPOTENCY_TTL_SECONDS; "
        "default: the stack's parameter, else $IDEMPOTENCY_TTL_SECONDS, else the function's)",
    )
    redrive.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    discard = commands.add_parser(
        "discard",
        parents=[queue_options],
        help="delete letters, each archived first to a JSON-lines file (a dry run without --yes)",
    )
    discard.add_argument(
        "--reason", metavar="CODE", help="letters of this reason or class (as redrive's --reason)"
    )
    discard.add_argument(
        "--message-id",
        metavar="ID",
        action="append",
        help="this letter (the MESSAGE ID column); repeat for more",
    )
    discard.add_argument(
        "--older-than",
        type=older_than,
        metavar="AGE",
        help="letters older than AGE (90s, 30m, 2h, 3d)",
    )
    discard.add_argument(
        "--archive",
        type=Path,
        metavar="PATH",
        help="append the letters here, one JSON object a line (default: "
        "dlq-archive-<stack or queue>-<UTC time>.jsonl in the current directory)",
    )
    discard.add_argument(
        "--yes", action="store_true", help="discard them (without it: only say which would go)"
    )
    restore = commands.add_parser(
        "restore",
        parents=[queue_options],
        help="send the letters of a discard's archive back to the DLQ, as they were",
    )
    restore.add_argument("archive", type=Path, metavar="ARCHIVE", help="the JSON-lines file")
    commands.add_parser(
        "status",
        parents=[queue_options],
        help="the DLQ's message move tasks (ListMessageMoveTasks)",
    )
    return parser


COMMANDS: Final = {
    "list": cmd_list,
    "redrive": cmd_redrive,
    "discard": cmd_discard,
    "restore": cmd_restore,
    "status": cmd_status,
}


def main(argv: Sequence[str] | None = None, *, sqs: SQSClient | None = None) -> int:
    parser = build_parser()

    def work(args: argparse.Namespace) -> int:
        if not args.command:
            raise UsageError(f"name a command: {', '.join(COMMANDS)}")
        return _run(args, sqs)

    return run_main(parser, argv, work)


def _run(args: argparse.Namespace, sqs: SQSClient | None) -> int:
    aws = aws_for(args)  # make up's stack: its endpoint and credentials; else the account's
    queues = resolve_queues(args, sqs or aws.sqs(), aws.cloudformation)
    return COMMANDS[args.command](args, queues)


if __name__ == "__main__":
    sys.exit(main())
