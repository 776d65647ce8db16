"""Rebalance these portfolios now: trigger requests through the stack's work queue.

    glider-trigger trigger --stack NAME --portfolio-ids ID[,ID...] [--skip-schedule-validation]
                            [--wait [--timeout SECONDS] [--no-outcome]] [--run-id ID] [--json]
    glider-trigger trigger --portfolio-ids ID[,ID...] ...   (make run ARGS=--keep's stack)

(`make trigger ARGS='--stack NAME --portfolio-ids a,b --wait'`.)

The requests take the function's normal path: one work-queue message per portfolio, whose body
the function's own contract builds (domain/trigger_input.py), so the idempotency guard, the
retries, the DLQ and the outcome follow-ups all apply. Each message carries the idempotency key
`manual:<run id>:<portfolio>`: sending the same run again (--run-id) triggers nothing twice.

With --wait the command follows each portfolio until its outcome, without ever receiving from
the work queue or the follow-up queue (that would steal the function's messages):
- triggered, and the rebalance id: the guard's record of the delivery in the idempotency table
  (a read-only, consistent GetItem, keyed as the function's guard keys it);
- failed: the function's dead letter, found in the DLQ by the delivery key in its body. The DLQ
  is read without being consumed (each message received, then made visible again at once, as
  `make dlq ARGS=list` does); only letters written since this command started count;
- the rebalance's final outcome (completed, failed, unknown), when the stack follows outcomes
  and has an outcome bus: the function's own outcome event, delivered by a temporary rule on that
  bus (matched on this run's delivery keys) to a temporary queue; both are deleted when the
  command ends.

The configuration comes from --stack NAME (outputs WorkQueueUrl and DeadLetterQueueUrl, resource
IdempotencyTable, parameters FollowOutcomes, OutcomeEventBusName, DefaultSkipScheduleValidation),
or else from local/.stack.json, which `make run ARGS=--keep` writes while its local stack is
up. Region, credentials and endpoint come from the standard AWS environment otherwise. Nothing
here reads the Glider API key.

With --json, stdout is one JSON document: what was sent (each portfolio's message and
idempotency key) and, with --wait, each portfolio's outcome; what is said on the way goes to
stderr.

exit status: 0 sent (with --wait: every portfolio triggered, and completed when followed),
1 a portfolio failed or was not sent, or an AWS error, 2 usage error, 3 --wait timed out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from glider_trigger.domain.errors import ConfigurationError, InvalidInputError
from glider_trigger.domain.models import FinalOutcome
from glider_trigger.domain.trigger_input import (
    DELIVERY_KEY_FIELD,
    IDEMPOTENCY_KEY,
    parse,
    trigger_input,
)
from glider_trigger.outbound import guard
from glider_trigger.outbound.events import DETAIL_TYPES, SOURCE
from glider_trigger.settings import Settings
from tools.base import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    ToolError,
    UsageError,
    add_stack_options,
    describe,
    one_line,
    positive_int,
    prog,
    run_main,
    table,
)
from tools.common import (
    LOCAL_HINT,
    LOCAL_STACK_FILE,
    TABLE_RESOURCE,
    UP_HINT,
    Aws,
    aws_for,
    aws_values,
    describe_stack,
    local_aws,
    outputs_of,
    parameter_flag,
    parameters_of,
    portfolio_ids,
    read_local_stack,
    shown,
    stack_resource,
)
from tools.dlq import (
    LIST_HOLD_SECONDS,
    Row,
    Scan,
    human_age,
    to_row,
    warn,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

PROG: Final = prog("trigger")

DEFAULT_TIMEOUT_SECONDS: Final = 900
POLL_SECONDS: Final = 3.0
# The DLQ is read whole on each look: not more often than this while a portfolio is pending.
DLQ_LOOK_SECONDS: Final = 10.0
# A letter counts when SQS stamped it at most this long before this command started (clocks).
CLOCK_SKEW_MS: Final = 2000
SQS_BATCH: Final = 10
RUN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_OUTCOMES: Final = {detail_type: outcome for outcome, detail_type in DETAIL_TYPES.items()}
# Sends keep the SDK's standard retries: a throttled send is retried, not reported.
_AWS_CONFIG: Final = BotoConfig(
    connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4}
)

# Waiting and the clock, as module attributes so that tests can drive the function in between.
_sleep: Callable[[float], None] = time.sleep
_clock: Callable[[], float] = time.monotonic

HEADERS_SENT: Final = ["PORTFOLIO", "MESSAGE ID", "IDEMPOTENCY KEY"]
HEADERS_WAITED: Final = ["PORTFOLIO", "TRIGGER", "REBALANCE", "OUTCOME", "DETAIL"]

EXAMPLES = f"""\
examples:
  {PROG} --stack glider-rebalance-trigger --portfolio-ids port_abc123,port_def456
  {PROG} --stack glider-rebalance-trigger --portfolio-ids port_abc123 --wait --timeout 600
  {PROG} --stack glider-rebalance-trigger --portfolio-ids port_abc123 --wait --no-outcome
  {PROG} --stack glider-rebalance-trigger --portfolio-ids port_abc123 --run-id RUN
            (send a run again: what it triggered is not triggered twice)
  {PROG} --portfolio-ids port_abc123   (the local stack of `make run ARGS=--keep`)

Each message can trigger a real rebalance. Without --skip-schedule-validation the stack's
DefaultSkipScheduleValidation applies.
exit status: 0 sent (--wait: all triggered, and completed when followed), 1 a portfolio failed,
was not sent, or an AWS error, 2 usage error, 3 --wait timed out.
"""


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the requests go and where their outcomes can be seen."""

    origin: str  # "stack NAME" or "local stack (...)"
    stack: str | None
    work_queue_url: str
    dlq_url: str | None
    table_name: str | None
    follow_outcomes: bool
    outcome_bus: str | None
    default_skip: bool
    aws: dict[str, str] = field(default_factory=dict)  # the local stack's AWS_* values

    @property
    def local(self) -> bool:
        return bool(self.aws)


def from_stack(aws: Aws, stack: str) -> Target:
    try:
        cloudformation = aws.cloudformation()
    except BotoCoreError as exc:
        raise ToolError(f"stack {stack}: {describe(exc)}") from exc
    found = describe_stack(cloudformation, stack)
    outputs, parameters = outputs_of(found), parameters_of(found)
    work_queue_url = outputs.get("WorkQueueUrl")
    if not work_queue_url:
        raise ToolError(f"stack {stack} has no output WorkQueueUrl")
    try:
        table = stack_resource(cloudformation, stack, TABLE_RESOURCE)
    except ToolError as exc:
        raise ToolError(f"stack {stack}: its {TABLE_RESOURCE} resource: {exc}") from exc
    # A stack deployed before OutcomeEventBusName existed publishes no outcome events.
    bus = parameters.get("OutcomeEventBusName", "").strip() or None
    return Target(
        origin=f"stack {stack}",
        stack=stack,
        work_queue_url=work_queue_url,
        dlq_url=outputs.get("DeadLetterQueueUrl") or None,
        table_name=table,
        follow_outcomes=parameter_flag(
            parameters, "FollowOutcomes", default=Settings.follow_outcomes
        ),
        outcome_bus=bus,
        default_skip=parameter_flag(
            parameters,
            "DefaultSkipScheduleValidation",
            default=Settings.default_skip_schedule_validation,
        ),
    )


def from_local_file(path: Path) -> Target:
    env = read_local_stack(path)
    origin = f"the local stack ({shown(path)}, from make run ARGS=--keep)"
    try:
        # The function's own reading of its environment: the same defaults, the same checks.
        settings = Settings.from_environment(env)
    except ConfigurationError as exc:
        raise ToolError(f"{origin}: the function would refuse this environment: {exc}") from exc
    if not settings.work_queue_url:
        raise ToolError(f"{origin}: WORK_QUEUE_URL is not set")
    return Target(
        origin=origin,
        stack=None,
        work_queue_url=settings.work_queue_url,
        dlq_url=settings.dlq_url,
        table_name=settings.idempotency_table_name,
        follow_outcomes=settings.follow_outcomes,
        outcome_bus=settings.outcome_event_bus_name,
        default_skip=settings.default_skip_schedule_validation,
        aws=aws_values(env),
    )


def load(args: argparse.Namespace) -> Target:
    if args.stack:
        local = local_aws(args.stack)  # make up's stack: its endpoint; else the account's
        return dataclasses.replace(
            from_stack(aws_for(args, config=_AWS_CONFIG), args.stack), aws=local
        )
    if LOCAL_STACK_FILE.exists():
        return from_local_file(LOCAL_STACK_FILE)
    raise UsageError(
        "no stack: pass --stack NAME (a deployed stack), or start the local stack with "
        f"`make run ARGS=--keep` (it writes {shown(LOCAL_STACK_FILE)})"
    )


# --- the requests ----------------------------------------------------------------------------


@dataclass
class Request:
    """One portfolio's message, and what has been seen of it since."""

    portfolio_id: str
    idempotency_key: str
    body: str
    delivery_key: str  # what the function keys the delivery by (the letters and events carry it)
    guard_key: str  # what its guard remembers the portfolio's trigger under
    message_id: str | None = None
    send_error: str | None = None
    # What happened: None while pending.
    triggered: bool = False
    earlier: bool = False  # triggered by an earlier send of this run, before this command
    rebalance_id: str | None = None
    failure: str | None = None  # why it failed, one line
    outcome: str | None = None  # completed / failed / unknown
    outcome_detail: str | None = None
    in_progress: bool = False  # the guard holds it right now

    @property
    def failed(self) -> bool:
        return self.failure is not None or self.send_error is not None

    def settled(self, watched: bool) -> bool:
        """Nothing more to wait for: failed, or triggered and (when watched) final. What an
        earlier send triggered had its outcome announced then, not to this command's rule."""
        if self.failed:
            return True
        return self.triggered and (not watched or self.earlier or self.outcome is not None)

    def pending_reason(self) -> str:
        if self.triggered:
            return (
                f"triggered (rebalanceId={self.rebalance_id or 'unknown'}), its outcome not "
                "final yet: the function follows it for up to FollowMaxSeconds (its outcome "
                "event, log line and metrics will say)"
            )
        if self.in_progress:
            return "being triggered by the function right now"
        return (
            "not triggered yet: waiting in the work queue, or retried after a transient failure "
            "(a failure lands in the DLQ)"
        )

    def as_json(self, *, waited: bool, watched: bool) -> dict[str, Any]:
        """What was sent for the portfolio and, after --wait, what became of it."""
        document: dict[str, Any] = {
            "portfolioId": self.portfolio_id,
            "idempotencyKey": self.idempotency_key,
            "messageId": self.message_id,
            "sendError": self.send_error,
        }
        if waited or self.earlier:
            document |= {
                "trigger": self.cells(watched=watched)[1].lower().replace(" ", "-"),
                "earlier": self.earlier,
                "rebalanceId": self.rebalance_id,
                "failure": self.failure,
                "outcome": self.outcome,
                "outcomeDetail": self.outcome_detail,
                "pending": None if self.settled(watched) else self.pending_reason(),
            }
        return document

    def cells(self, *, watched: bool) -> list[str]:
        if self.send_error:
            return [self.portfolio_id, "NOT SENT", "-", "-", self.send_error]
        if self.failure:
            return [self.portfolio_id, "FAILED", "-", "-", self.failure]
        if not self.triggered:
            return [
                self.portfolio_id,
                "triggering" if self.in_progress else "pending",
                "-",
                "-",
                "-",
            ]
        if self.outcome is not None:
            outcome = self.outcome
        elif self.earlier:
            outcome = "-"
        else:
            outcome = "pending" if watched else "not watched"
        detail = self.outcome_detail or ("by an earlier send of this run" if self.earlier else "-")
        trigger = "earlier" if self.earlier else "triggered"
        return [self.portfolio_id, trigger, self.rebalance_id or "unknown", outcome, detail]


def build_requests(ids: Sequence[str], *, run_id: str, skip: bool) -> list[Request]:
    """The bodies, built by the function's contract and read back by its own parser: the keys
    the tool looks for are the ones the function will use."""
    requests = []
    for portfolio_id in ids:
        key = f"manual:{run_id}:{portfolio_id}"
        body = trigger_input(portfolio_id, skip, idempotency_key=key)
        try:
            parsed = parse(json.loads(body), default_skip=skip, transport=None)
        except InvalidInputError as exc:  # cannot happen for a validated id; said if it does
            raise ToolError(f"the function would refuse the body {body}: {exc}") from exc
        [request] = parsed.requests
        delivery_key = parsed.source.dedupe_key
        if delivery_key is None:
            raise ToolError(f"the body {body} has no delivery key")
        requests.append(Request(portfolio_id, key, body, delivery_key, request.guard_key))
    return requests


def send(sqs: SQSClient, queue_url: str, requests: Sequence[Request]) -> None:
    """SendMessageBatch, ten at a time; each request gets its message id or its send error."""
    for start in range(0, len(requests), SQS_BATCH):
        chunk = requests[start : start + SQS_BATCH]
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": request.body} for index, request in enumerate(chunk)
        ]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            for request in chunk:
                request.send_error = describe(exc)
            continue
        for sent in answer.get("Successful", []):
            chunk[int(sent["Id"])].message_id = sent["MessageId"]
        for refused in answer.get("Failed", []):
            chunk[
                int(refused["Id"])
            ].send_error = f"{refused.get('Code', 'Failed')}: {refused.get('Message', '')}".strip()


# --- what the stack shows of them ------------------------------------------------------------


class GuardRecords:
    """The function guard's records, read only, through the function's own reader
    (outbound/guard.py `read`): the record id is the very one the function writes."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table_name = table_name
        self._client = client

    def look(self, request: Request) -> bool:
        """Update `request` from its record; True when that changed what is known."""
        try:
            record = guard.read(self._client, self._table_name, request.guard_key)
        except (ClientError, BotoCoreError) as exc:
            raise ToolError(f"the idempotency table: {describe(exc)}") from exc
        if record is None:
            return False
        if record.held(time.time()):
            changed = not request.in_progress
            request.in_progress = True
            return changed
        data = record.settled
        if data is None:
            return False
        if data.get("outcome") == "failed":  # a 2xx that was not a success: settled, not retried
            request.failure = one_line(
                f"{data.get('reason') or 'UNEXPECTED_RESPONSE'}: {data.get('detail') or ''}", 300
            )
            return True
        request.triggered = True
        rebalance_id = data.get("rebalanceId")
        request.rebalance_id = rebalance_id if isinstance(rebalance_id, str) else None
        return True


class DeadLetters:
    """The DLQ, read without consuming: this run's letters. The function's letter of a portfolio
    names its delivery (deliveryKey); a message the work queue's redrive moved there (the
    function never settled it: it crashed or timed out MaxReceiveCount times) is the body as
    sent, with its idempotencyKey."""

    def __init__(self, sqs: SQSClient, dlq_url: str, *, since_ms: int) -> None:
        self._sqs = sqs
        self._url = dlq_url
        self._since_ms = since_ms - CLOCK_SKEW_MS
        self._last = -float("inf")

    def look(self, pending: Sequence[Request], *, now: float) -> list[Request]:
        """The pending requests a letter was found for (each updated)."""
        if now - self._last < DLQ_LOOK_SECONDS:
            return []
        self._last = now
        by_key = {r.delivery_key: r for r in pending} | {r.idempotency_key: r for r in pending}
        found = []
        scan = Scan(self._sqs, self._url, hold_seconds=LIST_HOLD_SECONDS)
        try:
            for message in scan.messages():
                row = to_row(message, now=time.time())
                if row.sent_ms is not None and row.sent_ms < self._since_ms:
                    continue
                delivery_key, idempotency_key = _keys_of(row.body)
                request = by_key.get(delivery_key)
                redriven = request is None
                request = request or by_key.get(idempotency_key)
                if request is None or request.failed or request.triggered:
                    continue
                request.failure = _failure(row, redriven=redriven)
                found.append(request)
        finally:
            scan.release()
        return found


def _failure(row: Row, *, redriven: bool) -> str:
    if redriven and not row.reason:
        return (
            "moved to the DLQ by the work queue's redrive: the function never settled it "
            "(see its logs) -> in the DLQ"
        )
    facts = [
        row.failure_class,
        f"HTTP {row.http_status}" if row.http_status else None,
        row.api_error_code,
    ]
    said = " ".join(part for part in facts if part)
    return one_line(
        f"{row.reason or 'FAILED'}{f' ({said})' if said else ''}: {row.detail or '-'} "
        "-> in the DLQ",
        300,
    )


def _keys_of(body: str) -> tuple[str, str]:
    """A letter's deliveryKey and idempotencyKey ("" for what it lacks)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return "", ""
    fields = payload if isinstance(payload, dict) else {}

    def text(value: object) -> str:
        return value if isinstance(value, str) else ""

    return text(fields.get(DELIVERY_KEY_FIELD)), text(fields.get(IDEMPOTENCY_KEY))


class OutcomeWatch:
    """A temporary rule on the outcome bus, matching this run's delivery keys, and a temporary
    queue it delivers to (its policy admits that rule only). Both go in `close`."""

    def __init__(self, events: EventBridgeClient, sqs: SQSClient, bus: str) -> None:
        self._events = events
        self._sqs = sqs
        self.bus = bus
        self.name = f"glider-trigger-wait-{secrets.token_hex(6)}"
        self.queue_url: str | None = None
        self._rule = False
        self._target = False

    def open(self, delivery_keys: Sequence[str]) -> None:
        # One prefix for the run's keys (key:manual:<run id>:...): a pattern of bounded size.
        prefix = os.path.commonprefix(list(delivery_keys))  # noqa: RUF071 - strings, not paths
        self.queue_url = self._sqs.create_queue(
            QueueName=self.name,
            Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "86400"},
        )["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        pattern = {"source": [SOURCE], "detail": {"deliveryKey": [{"prefix": prefix}]}}
        rule_arn = self._events.put_rule(
            Name=self.name,
            EventBusName=self.bus,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=f"{PROG}: this run's outcome events, deleted when it ends",
        )["RuleArn"]
        self._rule = True
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ThisRunsOutcomeEvents",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                }
            ],
        }
        self._sqs.set_queue_attributes(
            QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        answer = self._events.put_targets(
            Rule=self.name, EventBusName=self.bus, Targets=[{"Id": "wait", "Arn": queue_arn}]
        )
        self._target = True
        if answer.get("FailedEntryCount"):
            [entry, *_] = answer.get("FailedEntries", [{}])
            raise ToolError(
                f"PutTargets: {entry.get('ErrorCode', 'Failed')}: {entry.get('ErrorMessage', '')}"
            )

    def receive(self) -> list[dict[str, Any]]:
        """The events delivered so far (deleted from the temporary queue)."""
        if self.queue_url is None:
            return []
        events: list[dict[str, Any]] = []
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=SQS_BATCH, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return events
            for message in messages:
                try:
                    event = json.loads(message.get("Body", ""))
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    events.append(event)
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.get("ReceiptHandle", "")}
                    for i, m in enumerate(messages)
                ],
            )

    def close(self) -> list[str]:
        """Delete the target, the rule and the queue; what could not be deleted, said."""
        left: list[str] = []
        steps: list[tuple[bool, str, Callable[[], object]]] = [
            (
                self._target,
                f"the target of rule {self.name} on bus {self.bus}",
                lambda: self._events.remove_targets(
                    Rule=self.name, EventBusName=self.bus, Ids=["wait"]
                ),
            ),
            (
                self._rule,
                f"rule {self.name} on bus {self.bus}",
                lambda: self._events.delete_rule(Name=self.name, EventBusName=self.bus),
            ),
            (
                self.queue_url is not None,
                f"queue {self.queue_url}",
                lambda: self._sqs.delete_queue(QueueUrl=self.queue_url or ""),
            ),
        ]
        for needed, what, step in steps:
            if not needed:
                continue
            try:
                step()
            except (ClientError, BotoCoreError) as exc:
                left.append(f"{what}: {describe(exc)}")
        self._target = self._rule = False
        self.queue_url = None
        return left


# --- the command -----------------------------------------------------------------------------


class Run:
    """One command: send, then (with --wait) look until every portfolio is settled."""

    def __init__(
        self,
        args: argparse.Namespace,
        target: Target,
        aws: Aws,
        requests: list[Request],
        *,
        run_id: str,
        skip: bool,
    ) -> None:
        self.args = args
        self.target = target
        self.aws = aws
        self.requests = requests
        self.run_id = run_id
        self.skip = skip
        self.started = _clock()
        self.started_ms = int(time.time() * 1000)
        self.watched = False  # --wait: outcome events watched
        self.timed_out = False

    def document(self) -> dict[str, Any]:
        """--json: the one document of what was sent and, with --wait, of each outcome."""
        waited = bool(self.args.wait)
        requests = self.requests
        document: dict[str, Any] = {
            "origin": self.target.origin,
            "stack": self.target.stack,
            "workQueueUrl": self.target.work_queue_url,
            "runId": self.run_id,
            "skipScheduleValidation": self.skip,
            "sent": sum(r.message_id is not None for r in requests),
            "portfolios": [r.as_json(waited=waited, watched=self.watched) for r in requests],
        }
        if waited:
            document |= {
                "outcomesWatched": self.watched,
                "timeoutSeconds": self.args.timeout,
                "timedOut": self.timed_out,
                "triggered": sum(r.triggered for r in requests),
                "completed": sum(r.outcome == FinalOutcome.COMPLETED for r in requests),
                "failed": sum(r.failed or r.outcome in BAD_OUTCOMES for r in requests),
            }
        return document

    def execute(self) -> int:
        sqs = self.aws.sqs()
        if not self.args.wait:
            self._earlier()
            send(sqs, self.target.work_queue_url, self.requests)
            return self._sent_report()
        # The watch first: an outcome event put before its rule exists is never seen.
        watch = self._watch(sqs)
        try:
            self._earlier()
            send(sqs, self.target.work_queue_url, self.requests)
            self._sent_report()
            return self._wait(sqs, watch)
        finally:
            if watch is not None:
                for left in watch.close():
                    warn(f"could not delete {left}: delete it by hand")

    def say(self, request: Request, what: str) -> None:
        elapsed = "+" + human_age(_clock() - self.started)
        print(f"  {elapsed:<5} {request.portfolio_id:<24} {what}", flush=True)

    # sending

    def _records(self) -> GuardRecords | None:
        if self.target.table_name is None:
            return None
        return GuardRecords(self.target.table_name, self.aws.dynamodb())

    def _earlier(self) -> None:
        """A run sent again: what its earlier sends settled stays settled (the guard skips it)."""
        if self.args.run_id is None:
            return  # a fresh run id: nothing was ever sent with it
        records = self._records()
        if records is None:
            return
        for request in self.requests:
            try:
                records.look(request)
            except ToolError as exc:
                warn(f"cannot tell what the earlier sends of this run triggered: {exc}")
                return
            request.earlier = request.triggered or request.failure is not None
            request.in_progress = False

    def _sent_report(self) -> int:
        requests = self.requests
        sent = [r for r in requests if r.message_id]
        queue = self.target.work_queue_url.rstrip("/").rsplit("/", 1)[-1]
        print(
            f"Sent {len(sent)} of {len(requests)} trigger request(s) to the work queue {queue} "
            f"of {self.target.origin}; run {self.run_id}, "
            f"skipScheduleValidation={json.dumps(self.skip)}."
        )
        rows = [
            [r.portfolio_id, r.message_id or f"NOT SENT: {r.send_error}", r.idempotency_key]
            for r in requests
        ]
        for line in table(HEADERS_SENT, rows):
            print(line)
        print()
        for request in requests:
            if request.earlier:
                what = (
                    f"triggered (rebalanceId={request.rebalance_id or 'unknown'})"
                    if request.triggered
                    else f"settled as failed ({request.failure})"
                )
                print(
                    f"{request.portfolio_id}: {what} by an earlier send of this run: not "
                    "triggered again"
                )
        unsent = [r for r in requests if r.send_error]
        if unsent:
            print(
                f"{len(unsent)} not sent: send the run again with --run-id {self.run_id} (what "
                "was sent is not triggered twice)."
            )
        else:
            print(
                f"Sending this run again (--run-id {self.run_id}) triggers nothing twice: the "
                "function triggers each idempotency key once."
            )
        if not self.args.wait:
            if self.target.stack:
                print(f"Failures go to the DLQ: make dlq ARGS='list --stack {self.target.stack}'")
            if self.target.local and not self.target.stack:  # make up's stack consumes its queues
                print(NO_EVENT_SOURCE)
        return EXIT_ERROR if unsent else EXIT_OK

    # waiting

    def _watch(self, sqs: SQSClient) -> OutcomeWatch | None:
        if self.args.no_outcome:
            return None
        target = self.target
        if not target.follow_outcomes:
            print(f"The stack does not follow outcomes (FollowOutcomes=false): {UNTIL_TRIGGERED}.")
            return None
        if not target.outcome_bus:
            print(
                "The stack publishes no outcome events (OutcomeEventBusName is empty): "
                f"{UNTIL_TRIGGERED}."
            )
            return None
        watch = OutcomeWatch(self.aws.events(), sqs, target.outcome_bus)
        try:
            watch.open([r.delivery_key for r in self.requests])
        except (ClientError, BotoCoreError, ToolError) as exc:
            detail = str(exc) if isinstance(exc, ToolError) else describe(exc)
            for left in watch.close():
                warn(f"could not delete {left}: delete it by hand")
            warn(f"cannot watch the outcome bus {target.outcome_bus} ({detail}): {UNTIL_TRIGGERED}")
            return None
        print(
            f"Watching the outcome events on bus {watch.bus} through a temporary rule and queue, "
            f"{watch.name} (deleted when this command ends)."
        )
        return watch

    def _wait(self, sqs: SQSClient, watch: OutcomeWatch | None) -> int:
        target = self.target
        watched = self.watched = watch is not None
        records = self._records()
        if records is None:
            warn("no idempotency table: a portfolio can be seen failed, not triggered")
        letters = None
        if target.dlq_url is None:
            warn(
                "no DLQ (output DeadLetterQueueUrl): a portfolio can be seen triggered, not failed"
            )
        else:
            letters = DeadLetters(sqs, target.dlq_url, since_ms=self.started_ms)
        by_key = {r.delivery_key: r for r in self.requests}
        deadline = self.started + self.args.timeout
        if target.local and not target.stack:  # make up's stack consumes its queues
            print(NO_EVENT_SOURCE)
        print(f"\nWaiting up to {self.args.timeout} s:", flush=True)
        while True:
            if records is not None and not self._look_at_records(records, watched=watched):
                records = None
            untriggered = [r for r in self.requests if not (r.triggered or r.failed)]
            if untriggered and letters is not None:
                try:
                    for request in letters.look(untriggered, now=_clock()):
                        self.say(request, f"FAILED {request.failure}")
                except ToolError as exc:
                    warn(f"{exc}: failures can no longer be seen in the DLQ")
                    letters = None
            if watch is not None:
                for event in watch.receive():
                    self._outcome(event, by_key)
            pending = [r for r in self.requests if not r.settled(watched)]
            if not pending or _clock() >= deadline:
                return self._final(pending, watched=watched)
            _sleep(max(0.0, min(POLL_SECONDS, deadline - _clock())))

    def _look_at_records(self, records: GuardRecords, *, watched: bool) -> bool:
        """Each untriggered portfolio's guard record; False when the table cannot be read."""
        for request in self.requests:
            if request.settled(watched) or request.triggered or request.failed:
                continue
            was_in_progress = request.in_progress
            try:
                changed = records.look(request)
            except ToolError as exc:
                warn(f"{exc}: triggers can no longer be seen, only failures")
                return False
            if changed:
                self._said_trigger(request, was_in_progress=was_in_progress)
        return True

    def _said_trigger(self, request: Request, *, was_in_progress: bool) -> None:
        if request.failure:
            self.say(request, f"FAILED {request.failure} (settled: not retried; see the DLQ)")
        elif request.triggered:
            self.say(request, f"triggered  rebalanceId={request.rebalance_id or 'unknown'}")
        elif request.in_progress and not was_in_progress:
            self.say(request, "being triggered")

    def _outcome(self, event: dict[str, Any], by_key: dict[str, Request]) -> None:
        detail = event.get("detail")
        if not isinstance(detail, dict):
            return
        outcome = _OUTCOMES.get(str(event.get("detail-type")))
        if outcome is None:
            # Not a rebalance's outcome: a failed trigger's letter event (its letter, read from
            # the DLQ, says it) or anything else on the bus.
            return
        rebalance_id = detail.get("rebalanceId")
        request = by_key.get(str(detail.get("deliveryKey")))
        if request is None or request.outcome is not None:
            return
        request.outcome = str(outcome)
        request.triggered = True  # an outcome is only ever of a triggered rebalance
        if isinstance(rebalance_id, str) and rebalance_id:
            request.rebalance_id = rebalance_id
        parts = []
        duration = detail.get("durationSeconds")
        if isinstance(duration, int | float):
            parts.append(f"in {duration:.1f} s")
        if detail.get("reason"):
            parts.append(one_line(str(detail["reason"]), 200))
        if request.outcome == FinalOutcome.FAILED:
            parts.append("its REBALANCE_FAILED letter is in the DLQ")
        request.outcome_detail = "; ".join(parts) or None
        said = f" ({request.outcome_detail})" if request.outcome_detail else ""
        self.say(request, f"{request.outcome:<10} rebalanceId={request.rebalance_id}{said}")

    def _final(self, pending: list[Request], *, watched: bool) -> int:
        requests = self.requests
        print()
        for line in table(HEADERS_WAITED, [r.cells(watched=watched) for r in requests]):
            print(line)
        failed = [r for r in requests if r.failed or r.outcome in BAD_OUTCOMES]
        triggered = sum(r.triggered for r in requests)
        completed = sum(r.outcome == FinalOutcome.COMPLETED for r in requests)
        done = f", {completed} completed" if watched else ""
        print(f"\n{triggered} of {len(requests)} triggered{done}, {len(failed)} failed.")
        if failed and self.target.stack:
            print(f"The DLQ: make dlq ARGS='list --stack {self.target.stack}'")
        if pending:
            self.timed_out = True
            print(f"Timed out after {self.args.timeout} s; still pending:")
            for request in pending:
                print(f"  {request.portfolio_id}: {request.pending_reason()}")
            return EXIT_TIMEOUT
        return EXIT_ERROR if failed else EXIT_OK


NO_EVENT_SOURCE: Final = (
    "Note: the local stack runs no event source: the messages wait in its work queue until "
    "something delivers them to the handler."
)
UNTIL_TRIGGERED: Final = "waiting until each portfolio is triggered or failed"
BAD_OUTCOMES: Final = (FinalOutcome.FAILED, FinalOutcome.UNKNOWN)


def run_id(text: str) -> str:
    if not RUN_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"a run id is 1-64 letters, digits and '-' (as this tool prints it), got {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rebalance portfolios now, through the stack's work queue.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_options(
        parser,
        json_help="one JSON document on stdout: what was sent and, with --wait, each outcome "
        "(what is said on the way goes to stderr)",
    )
    parser.add_argument(
        "--portfolio-ids", metavar="ID,ID", required=True, help="the portfolios, comma-separated"
    )
    parser.add_argument(
        "--skip-schedule-validation",
        action="store_true",
        help="trigger even without an active schedule on Glider (v1); default: the stack's "
        "DefaultSkipScheduleValidation",
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow each portfolio until its outcome"
    )
    parser.add_argument(
        "--timeout",
        type=positive_int(),
        metavar="SECONDS",
        help=f"with --wait: give up after this long (default {DEFAULT_TIMEOUT_SECONDS})",
    )
    parser.add_argument(
        "--no-outcome",
        action="store_true",
        help="with --wait: stop once each is triggered (or failed), not at its final outcome",
    )
    parser.add_argument(
        "--run-id",
        type=run_id,
        metavar="ID",
        help="send an earlier run again (its idempotency keys): nothing is triggered twice",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, trigger)


def trigger(args: argparse.Namespace) -> int:
    ids = _checked(args)
    target = load(args)
    skip = bool(args.skip_schedule_validation or target.default_skip)
    run_id = args.run_id or str(uuid.uuid4())
    requests = build_requests(ids, run_id=run_id, skip=skip)
    aws = Aws(target.aws, config=_AWS_CONFIG, region=args.region, profile=args.profile)
    run = Run(args, target, aws, requests, run_id=run_id, skip=skip)
    if target.stack and target.table_name:
        _warn_if_paused(aws, target.stack, target.table_name)
    try:
        return _execute(run, as_json=args.json)
    except (ClientError, BotoCoreError) as exc:
        if target.local and _unreachable(exc):
            hint = UP_HINT if target.stack else LOCAL_HINT
            raise ToolError(f"{describe(exc)}{hint}") from exc
        raise


def _warn_if_paused(aws: Aws, stack: str, table: str) -> None:
    """A paused stack keeps the messages in its work queue until resume: said before sending,
    so that nobody waits out --timeout, or triggers again under another key, for nothing."""
    # Imported here: tools.pause reads schedules through tools.schedules, not needed otherwise.
    from tools.pause import read_record  # noqa: PLC0415

    record = read_record(aws, table)  # the stack's table, read already: no second lookup
    if record is not None:
        print(
            f"{PROG}: stack {stack} is PAUSED since {record.paused_at} by {record.paused_by} "
            f"({record.reason}): these requests wait in its work queue and are triggered after "
            f"`glider-trigger resume --stack {stack}` (sending them again adds nothing)",
            file=sys.stderr,
        )


def _execute(run: Run, *, as_json: bool) -> int:
    if not as_json:
        return run.execute()
    # stdout holds the one document: what is said on the way goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        status = run.execute()
    print(json.dumps(run.document(), indent=2, ensure_ascii=False))
    return status


def _checked(args: argparse.Namespace) -> list[str]:
    """The portfolio ids; the options checked together."""
    if not args.wait and (args.timeout is not None or args.no_outcome):
        raise UsageError("--timeout and --no-outcome go with --wait")
    args.timeout = args.timeout or DEFAULT_TIMEOUT_SECONDS
    return portfolio_ids(args.portfolio_ids)


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, EndpointConnectionError)


if __name__ == "__main__":
    sys.exit(main())
