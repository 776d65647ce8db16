"""Applies the delivery semantics of each input kind to trigger outcomes.

- EventBridge, Scheduler and direct invocations: every failure is dead-lettered and a summary
  is returned; only a DLQ that cannot be written makes the invocation fail (so that Lambda's
  retries and the on-failure destination keep the event).
- SQS records: a permanent failure is dead-lettered at once (the record then leaves the work
  queue); a transient or systemic one raises RecordRetryRequested, which the batch processor
  reports in batchItemFailures, so SQS redelivers it. On its last receive (MAX_RECEIVE_COUNT)
  the function dead-letters what is left itself, with letters that name the delivery.
- Inputs with more ids than the fan-out threshold go to the work queue, one message per id.
- A portfolio whose delivery another invocation holds "in progress" (on non-SQS inputs) is
  deferred: a delayed work-queue message carrying the delivery's key looks at it again once the
  holder's window has passed, and finds it triggered or triggers it. Without a work queue (or if
  that send fails) the invocation fails, so that Lambda retries it later.
- A failure after which Glider may have acted (a 2xx that was not a success) is remembered by the
  guard; its dead letter is written once per delivery, however often the delivery comes back.

Triggers run on a bounded worker pool; logs, metrics and DLQ writes happen on the invocation's
own thread once the workers are done.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeGuard

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger import dead_letter
from glider_trigger.dead_letter import DeadLetter, DeadLetterQueue
from glider_trigger.errors import (
    DeadLetterWriteError,
    DuplicateInProgressError,
    FailureClass,
    FanOutError,
    GliderApiError,
    InvalidInputError,
    TriggerError,
    classify,
)
from glider_trigger.events import (
    delivery_key,
    parse_event,
    parse_sqs_body,
    resumed_input,
    trigger_input,
)
from glider_trigger.idempotency import TriggerGuard
from glider_trigger.models import (
    Failed,
    InputSource,
    Outcome,
    ParsedInput,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.sqs_writer import MAX_DELAY_SECONDS, OutgoingMessage, QueueWriter
from glider_trigger.telemetry import Telemetry
from glider_trigger.trigger import Invocation, RebalanceTrigger
from glider_trigger.work_queue import WorkQueueVisibility

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


# A deferred portfolio is looked at again this long after the holder's longest window.
DEFER_SLACK_SECONDS = 5
HELD = "deferred: in progress elsewhere"  # the log line's action for a deferred portfolio


class RecordRetryRequested(Exception):
    """An SQS record has work left that may succeed later: report it for redelivery."""


class DeferralError(Exception):
    """Portfolios held in progress elsewhere could not be deferred to the work queue: the
    invocation fails, so that Lambda retries it (and the retry finds them done, or does them)."""


@dataclass(frozen=True)
class SqsMessage:
    """What the processor needs of one SQS record."""

    message_id: str
    body: str
    receipt_handle: str
    queue_arn: str
    receive_count: int = 1  # SQS's ApproximateReceiveCount: this is the n-th receive


@dataclass
class PreparedRecord:
    """One SQS record after its portfolios were triggered, before its fate is settled."""

    message: SqsMessage
    parsed: ParsedInput | None
    error: InvalidInputError | None
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class ContextDeadline:
    """The Lambda deadline, less a margin kept for dead-lettering and returning."""

    context: LambdaContext
    margin_seconds: float

    def seconds_left(self) -> float:
        return self.context.get_remaining_time_in_millis() / 1000 - self.margin_seconds


@dataclass
class InvocationSummary:
    """What a non-SQS invocation did, returned to the caller (and shown by `make run`)."""

    source: InputSource
    results: list[dict[str, Any]] = field(default_factory=list)
    fanned_out: int = 0

    def as_response(self) -> dict[str, Any]:
        def count(*outcomes: str) -> int:
            return sum(1 for result in self.results if result["outcome"] in outcomes)

        return {
            "source": self.source.kind.value,
            "deliveryId": self.source.delivery_id,
            "portfolios": len(self.results) + self.fanned_out,
            "fannedOut": self.fanned_out,
            "triggered": count("triggered", "already-triggered"),
            "deadLettered": count("dead-lettered", "already-dead-lettered"),
            "inProgressElsewhere": count("in-progress-elsewhere"),
            "results": self.results,
        }


class TriggerProcessor:
    def __init__(
        self,
        trigger: RebalanceTrigger,
        dead_letters: DeadLetterQueue,
        telemetry: Telemetry,
        *,
        guard: TriggerGuard,
        visibility: WorkQueueVisibility,
        default_skip_schedule_validation: bool,
        deadline_margin_seconds: float,
        breaker_threshold: int,
        attempts_per_portfolio: int,
        longest_wait_seconds: float,
        max_concurrency: int = 1,
        work_queue: QueueWriter | None = None,
        fanout_threshold: int = 50,
        max_receive_count: int | None = None,
    ) -> None:
        self._trigger = trigger
        self._dead_letters = dead_letters
        self._telemetry = telemetry
        self._guard = guard
        self._visibility = visibility
        self._default_skip = default_skip_schedule_validation
        self._margin = deadline_margin_seconds
        self._breaker_threshold = breaker_threshold
        self._attempts_per_portfolio = attempts_per_portfolio
        self._longest_wait = longest_wait_seconds
        self._workers = max_concurrency
        self._work_queue = work_queue
        self._fanout_threshold = fanout_threshold
        self._max_receives = max_receive_count

    def begin(self, context: LambdaContext) -> Invocation:
        """Fresh per-invocation state: the deadline, and no halt or open circuit yet."""
        self._guard.register(context)
        return Invocation(
            ContextDeadline(context, self._margin),
            request_id=context.aws_request_id,
            breaker_threshold=self._breaker_threshold,
            attempts_per_portfolio=self._attempts_per_portfolio,
            lifetime_seconds=context.get_remaining_time_in_millis() / 1000,
        )

    def process_event(self, event: object, invocation: Invocation) -> InvocationSummary:
        try:
            parsed = _with_delivery_key(
                parse_event(event, default_skip=self._default_skip), invocation
            )
        except InvalidInputError as exc:
            self._telemetry.received(0)
            source = InputSource(SourceKind.DIRECT)
            raw = json.dumps(event, default=str, ensure_ascii=True)
            self._send([dead_letter.for_unparsable_input(raw, exc, source)])
            self._telemetry.unparsable(exc, source)
            summary = InvocationSummary(source)
            summary.results.append(_failure_result(None, exc, classify(exc)))
            return summary

        if self._work_queue is not None and len(parsed.requests) > self._fanout_threshold:
            # Counted as received when each work-queue message is processed, not twice.
            self._telemetry.received(len(parsed.rejected))
            return self._fan_out(parsed, invocation, self._work_queue)
        self._telemetry.received(len(parsed.requests) + len(parsed.rejected))
        outcomes = self._trigger_all(parsed.requests, invocation)
        held = [o for o in outcomes if _elsewhere(o)]
        # Outcomes are logged before the DLQ write, so a failing DLQ does not hide what was done.
        for outcome in outcomes:
            failure = HELD if _elsewhere(outcome) else "dead-lettered"
            self._telemetry.outcome(outcome, action=_action(outcome, failure))
        # A portfolio held in progress by another invocation is looked at again once that
        # holder's window has passed; no dead letter (a replay would be a second trigger).
        # Letters first: if the deferral then fails, the invocation fails with them written.
        failures = [o for o in outcomes if isinstance(o, Failed) and not _elsewhere(o)]
        self._dead_letter(self._rejected_letters(parsed), failures)
        self._defer(held, invocation)

        summary = _summary_of_rejected(parsed)
        summary.results.extend(_outcome_result(outcome) for outcome in outcomes)
        return summary

    def prepare_sqs_batch(
        self, messages: Sequence[SqsMessage], invocation: Invocation
    ) -> dict[str, PreparedRecord]:
        """Parse every record and trigger all their portfolios at once, on the worker pool;
        `settle_sqs_record` then applies each record's delivery semantics."""
        prepared: list[PreparedRecord] = []
        requests: list[tuple[PreparedRecord, TriggerRequest]] = []
        for message in messages:
            try:
                parsed = parse_sqs_body(
                    message.body, message_id=message.message_id, default_skip=self._default_skip
                )
            except InvalidInputError as exc:
                prepared.append(PreparedRecord(message, None, exc))
                continue
            record = PreparedRecord(message, parsed, None)
            prepared.append(record)
            requests.extend((record, request) for request in parsed.requests)
        outcomes = self._trigger_all([request for _, request in requests], invocation)
        for (record, _), outcome in zip(requests, outcomes, strict=True):
            record.outcomes.append(outcome)
        return {record.message.message_id: record for record in prepared}

    def settle_sqs_record(self, record: PreparedRecord, invocation: Invocation) -> None:
        """Raises RecordRetryRequested when the record should be redelivered."""
        message, parsed = record.message, record.parsed
        if parsed is None:
            assert record.error is not None  # noqa: S101  # nosec B101 - one of the two is set
            self._telemetry.received(0)
            source = InputSource(SourceKind.SQS, delivery_id=message.message_id)
            self._send([dead_letter.for_unparsable_input(message.body, record.error, source)])
            self._telemetry.unparsable(record.error, source)
            return

        self._telemetry.received(len(parsed.requests) + len(parsed.rejected))
        failures = [outcome for outcome in record.outcomes if isinstance(outcome, Failed)]
        permanent = [f for f in failures if f.failure_class == FailureClass.PERMANENT]
        retry = [f for f in failures if f.failure_class != FailureClass.PERMANENT]
        # On its last receive SQS would move the whole message to the DLQ, where a replay (a new
        # message id) would trigger again what it had triggered: its letters name the delivery.
        last = bool(retry) and self._is_last_receive(message)
        held = [f for f in retry if _elsewhere(f)] if last else []

        def fate(outcome: Outcome) -> str:
            if any(outcome is h for h in held):
                return HELD
            if any(outcome is f for f in retry):
                return "dead-lettered: last receive" if last else "retry"
            return "dead-lettered"

        for outcome in record.outcomes:
            self._telemetry.outcome(outcome, action=_action(outcome, fate(outcome)))
        if last:
            rest = [f for f in retry if not any(f is h for h in held)]
            self._dead_letter(self._rejected_letters(parsed), permanent + rest)
            self._defer(held, invocation)
            return
        self._dead_letter(self._rejected_letters(parsed), permanent)
        if retry:
            self._postpone_for_retry_after(message, retry, invocation)
            reasons = ", ".join(f"{o.request.portfolio_id}: {o.error.reason}" for o in retry)
            raise RecordRetryRequested(
                f"message {message.message_id} will be redelivered ({reasons})"
            )

    def _is_last_receive(self, message: SqsMessage) -> bool:
        return self._max_receives is not None and message.receive_count >= self._max_receives

    def _fan_out(
        self, parsed: ParsedInput, invocation: Invocation, work_queue: QueueWriter
    ) -> InvocationSummary:
        """Too many ids for one invocation: one work-queue message each, spread by the SQS
        event source over concurrent invocations. Each carries the delivery's key, so a retry
        of this fan-out (or a duplicate of its input) triggers nothing twice."""
        messages = [
            OutgoingMessage(
                trigger_input(
                    request.portfolio_id,
                    request.skip_schedule_validation,
                    idempotency_key=parsed.source.dedupe_key,
                )
            )
            for request in parsed.requests
        ]
        try:
            work_queue.send(messages, parallelism=self._workers)
        except FanOutError:
            self._telemetry.logger.exception(
                "Fan-out to the work queue failed; the invocation fails so that it is retried",
                extra={"work_queue_url": work_queue.queue_url, "messages": len(messages)},
            )
            raise
        self._telemetry.fanned_out(len(messages), work_queue.queue_url, parsed.source)
        self._send(self._rejected_letters(parsed))
        return _summary_of_rejected(parsed, fanned_out=len(messages))

    def _trigger_all(
        self, requests: Sequence[TriggerRequest], invocation: Invocation
    ) -> list[Outcome]:
        """On a bounded worker pool over the shared keep-alive connection pool."""
        if self._workers <= 1 or len(requests) <= 1:
            return [self._trigger_one(request, invocation) for request in requests]
        with ThreadPoolExecutor(
            max_workers=min(self._workers, len(requests)), thread_name_prefix="trigger"
        ) as pool:
            return list(pool.map(lambda request: self._trigger_one(request, invocation), requests))

    def _postpone_for_retry_after(
        self, message: SqsMessage, retry: list[Failed], invocation: Invocation
    ) -> None:
        """A Retry-After longer than the invocation could wait becomes the message's visibility
        timeout, so SQS redelivers it no sooner than Glider asked."""
        # Only a Retry-After the invocation would not wait for: a shorter one was waited out
        # in the invocation, and the queue's own visibility timeout (720 s) is longer anyway.
        waits = [
            f.error.retry_after_seconds
            for f in retry
            if isinstance(f.error, GliderApiError)
            and f.error.retry_after_seconds
            and f.error.retry_after_seconds > self._longest_wait
        ]
        if not waits:
            return
        try:
            seconds = self._visibility.postpone(
                message.queue_arn,
                message.receipt_handle,
                max(waits),
                received_seconds_ago=invocation.age_seconds(),
            )
        except (ClientError, BotoCoreError):
            # The default visibility timeout still brings the message back: log, do not fail.
            self._telemetry.logger.warning(
                "Could not postpone the message for its Retry-After",
                exc_info=True,
                extra={"delivery_id": message.message_id, "retry_after_seconds": max(waits)},
            )
            return
        self._telemetry.logger.info(
            "Message postponed for its Retry-After",
            extra={"delivery_id": message.message_id, "visibility_timeout_seconds": seconds},
        )

    def _trigger_one(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        blocker = invocation.blocker()
        if blocker is not None:  # decided before touching the idempotency store
            return Failed(request, blocker, classify(blocker), attempts=0)
        try:
            return self._guard.run(
                _guard_key(request),
                request,
                lambda: self._trigger.trigger(request, invocation),
            )
        except Exception as exc:
            # A bug must cost one portfolio a retry, not the whole batch its progress.
            self._telemetry.logger.exception(
                "Unexpected error while triggering", extra={"portfolio_id": request.portfolio_id}
            )
            error = TriggerError(f"unexpected {type(exc).__name__} while triggering")
            return Failed(request, error, classify(error), attempts=0)

    def _defer(self, held: Sequence[Failed], invocation: Invocation) -> None:
        """One delayed work-queue message per held portfolio, carrying its delivery's key; it
        becomes visible after the longest window any holder can have (this function's timeout,
        which is this invocation's own lifetime). Raises DeferralError if that is not possible."""
        if not held:
            return
        if self._work_queue is None:
            raise DeferralError(
                f"{len(held)} portfolio(s) held in progress by another invocation and no "
                "WORK_QUEUE_URL to defer them to: failing so that Lambda retries later"
            )
        delay = min(MAX_DELAY_SECONDS, math.ceil(invocation.lifetime_seconds) + DEFER_SLACK_SECONDS)
        messages = [OutgoingMessage(resumed_input(f.request), delay_seconds=delay) for f in held]
        try:
            self._work_queue.send(messages)
        except FanOutError as exc:
            self._telemetry.logger.exception(
                "Deferring portfolios held in progress elsewhere failed; the invocation fails "
                "so that it is retried",
                extra={"work_queue_url": self._work_queue.queue_url, "messages": len(messages)},
            )
            raise DeferralError(str(exc)) from exc
        self._telemetry.deferred(len(messages), delay, self._work_queue.queue_url)

    def _dead_letter(self, rejected: list[DeadLetter], failures: Sequence[Failed]) -> None:
        """The letters of an input: rejected ids and failures in one batched write; a failure
        that settled its delivery (Glider may have acted) through the guard, once per delivery
        and transport (message or event id), so that a redelivery or a retry of the input never
        writes it twice, while a replay of its letter (a new message) writes it again."""
        plain = [dead_letter.for_failure(f) for f in failures if not f.settles_delivery]
        self._send(rejected + plain)
        for failure in failures:
            if failure.settles_delivery:
                source = failure.request.source
                self._guard.once(
                    f"{_guard_key(failure.request)}#dead-letter@{source.delivery_id}",
                    partial(self._send, [dead_letter.for_failure(failure)]),
                )

    def _rejected_letters(self, parsed: ParsedInput) -> list[DeadLetter]:
        for rejected in parsed.rejected:
            self._telemetry.rejected(rejected.portfolio_id, rejected.error, parsed.source)
        return [dead_letter.for_rejected_id(r, parsed.source) for r in parsed.rejected]

    def _send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        try:
            self._dead_letters.send(letters)
        except DeadLetterWriteError:
            self._telemetry.logger.exception(
                "Dead-letter queue write failed; the invocation fails so that AWS keeps the input",
                extra={"dlq_url": self._dead_letters.queue_url, "messages": len(letters)},
            )
            raise
        self._telemetry.dead_lettered(len(letters))


def _summary_of_rejected(parsed: ParsedInput, *, fanned_out: int = 0) -> InvocationSummary:
    """An input's summary, starting with the ids it rejected."""
    summary = InvocationSummary(parsed.source, fanned_out=fanned_out)
    summary.results.extend(
        _failure_result(rejected.portfolio_id, rejected.error, classify(rejected.error))
        for rejected in parsed.rejected
    )
    return summary


def _with_delivery_key(parsed: ParsedInput, invocation: Invocation) -> ParsedInput:
    """The input with its delivery key settled: its own, else the Lambda request id, which
    Lambda keeps across its own retries of an asynchronous invocation (the same form as an
    on-failure destination record's key, so replaying one keeps it)."""
    if parsed.source.dedupe_key is not None:
        return parsed
    source = replace(parsed.source, dedupe_key=delivery_key("lambda", invocation.request_id))
    requests = tuple(replace(request, source=source) for request in parsed.requests)
    return replace(parsed, source=source, requests=requests)


def _guard_key(request: TriggerRequest) -> str:
    """Per portfolio per delivery."""
    return f"{request.source.dedupe_key}#{request.portfolio_id}"


def _elsewhere(outcome: Outcome) -> TypeGuard[Failed]:
    """Held in progress by another invocation."""
    return isinstance(outcome, Failed) and isinstance(outcome.error, DuplicateInProgressError)


def _action(outcome: Outcome, failure_action: str) -> str:
    """Where an outcome goes next, for its log line: `failure_action` for a failure."""
    if isinstance(outcome, Failed) and outcome.remembered:
        return "none: dead-lettered by an earlier delivery"
    return failure_action


def _outcome_result(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Triggered):
        triggered: dict[str, Any] = {
            "portfolioId": outcome.request.portfolio_id,
            "outcome": "already-triggered" if outcome.already_triggered else "triggered",
            "rebalanceId": outcome.receipt.rebalance_id,
            "attempts": outcome.attempts,
        }
        if outcome.receipt.reason is not None:
            triggered["reason"] = outcome.receipt.reason
        return triggered
    result = _failure_result(outcome.request.portfolio_id, outcome.error, outcome.failure_class)
    result["attempts"] = outcome.attempts
    if _elsewhere(outcome):
        result["outcome"] = "in-progress-elsewhere"
        result["action"] = "deferred"
    elif outcome.remembered:
        result["outcome"] = "already-dead-lettered"
    return result


def _failure_result(
    portfolio_id: object, error: TriggerError, failure_class: FailureClass
) -> dict[str, Any]:
    return {
        "portfolioId": portfolio_id if isinstance(portfolio_id, str) else None,
        "outcome": "dead-lettered",
        "failureClass": failure_class.value,
        "reason": error.reason,
        "detail": str(error),
    }
