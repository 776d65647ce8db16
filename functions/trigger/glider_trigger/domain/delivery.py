"""The use case: the work queue's messages, each one portfolio's trigger, settled by its fate.

Every trigger runs here, whatever its input's source: an event's portfolios arrive as queued
messages (domain/intake.py), upstream systems send messages themselves, replays come back as
messages. A message naming one valid portfolio is triggered; one naming more (or any rejected
id) is split first, each portfolio its own message under the same delivery key, so that its
redelivery or redrive never holds more work than one trigger. What happens next is decided by
domain/fate.py from the outcome, and carried out here: a letter, a deferral, a redelivery.

The message's portfolios across a batch are triggered at once on a bounded worker pool; logs,
metrics and queue writes happen on the invocation's own thread once the workers are done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from glider_trigger.domain.batch import SETTLED, BatchWork, Settlement
from glider_trigger.domain.errors import (
    FanOutError,
    FanOutRefusedError,
    InvalidInputError,
    NotAttemptedError,
    TriggerError,
)
from glider_trigger.domain.fate import decide
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.intake import Intake
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    Message,
    Outcome,
    OutgoingMessage,
    ParsedInput,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.domain.pool import on_pool
from glider_trigger.domain.ports import (
    MAX_DELAY_SECONDS,
    Attempts,
    Deadline,
    DeliveryReports,
    History,
    MessageQueue,
    TriggerGuard,
)
from glider_trigger.domain.trigger import RebalanceTrigger
from glider_trigger.domain.trigger_input import resumed_input

# A deferred portfolio is looked at again this long after the holder's longest window.
DEFER_SLACK_SECONDS = 5


@dataclass(frozen=True, kw_only=True)
class DeliveryRules:
    max_concurrency: int  # workers triggering in parallel
    # The work queue's maxReceiveCount: on the last receive the function letters what is left.
    max_receive_count: int


@dataclass
class PreparedMessage:
    """One message after its portfolio was triggered, before its fate is carried out."""

    message: Message
    parsed: ParsedInput | InvalidInputError
    outcome: Outcome | None = None

    @property
    def single(self) -> TriggerRequest | None:
        """The one portfolio this message triggers; None when it is split (or unparsable)."""
        parsed = self.parsed
        if isinstance(parsed, ParsedInput) and len(parsed.requests) == 1 and not parsed.rejected:
            return parsed.requests[0]
        return None


class DeliveryService(BatchWork[ParsedInput, PreparedMessage]):
    def __init__(
        self,
        trigger: RebalanceTrigger,
        guard: TriggerGuard,
        letterbox: LetterBox,
        work_queue: MessageQueue,
        telemetry: DeliveryReports,
        *,
        intake: Intake,
        rules: DeliveryRules,
        follower: OutcomeFollower | None = None,
        history: History,
    ) -> None:
        self._trigger = trigger
        self._guard = guard
        self._letterbox = letterbox
        self._work_queue = work_queue
        self._telemetry = telemetry
        self._rules = rules
        self._intake = intake  # a split is an intake of the message's own input, under its key
        self._follower = follower
        self._history = history

    def begin(self, deadline: Deadline, *, lifetime_seconds: float) -> Invocation:
        """Fresh per-invocation state: the deadline, and no halt or open circuit yet."""
        return Invocation(deadline, self._trigger.policy, lifetime_seconds=lifetime_seconds)

    def prepare(
        self,
        messages: Sequence[tuple[Message, ParsedInput | InvalidInputError]],
        invocation: Invocation,
    ) -> list[PreparedMessage]:
        """Trigger every single-portfolio message's portfolio at once, on the worker pool."""
        prepared = [PreparedMessage(message, parsed) for message, parsed in messages]
        singles = [(record, request) for record in prepared if (request := record.single)]
        outcomes = on_pool(
            lambda pair: self._trigger_one(pair[1], invocation),
            singles,
            workers=self._rules.max_concurrency,
        )
        for (record, _), outcome in zip(singles, outcomes, strict=True):
            record.outcome = outcome
        return prepared

    def settle(self, record: PreparedMessage, invocation: Invocation) -> Settlement:
        """Carry out the message's fate. Raises QueueWriteError when a queue cannot be written:
        the message is then delivered again."""
        parsed = record.parsed
        if isinstance(parsed, InvalidInputError):
            source = InputSource(SourceKind.SQS, delivery_id=record.message.message_id)
            self._letterbox.unparsable(record.message.body, parsed, source)
            return SETTLED
        if record.outcome is None:
            return self._split(record.message, parsed)
        self._telemetry.received(1)
        outcome = record.outcome
        fate = decide(
            outcome,
            last_receive=self._is_last_receive(record.message),
            waits_for=self._trigger.policy.waits_for,
        )
        # Logged before any write, so a failing DLQ does not hide what was done.
        self._telemetry.outcome(outcome, action=fate.action)
        if isinstance(outcome, Failed) and fate.dead_letter:
            self._letterbox.failures(parsed, [outcome])
        if isinstance(outcome, Failed) and fate.defer:
            self._defer(outcome, invocation)
        return fate.settlement

    def _is_last_receive(self, message: Message) -> bool:
        return message.receive_count >= self._rules.max_receive_count

    def _trigger_one(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        blocker = invocation.blocker() or _out_of_time(invocation)
        if blocker is not None:  # decided before touching the idempotency store
            outcome: Outcome = Failed.not_attempted(request, blocker)
        else:
            outcome = self._guarded(request, invocation)
        # Past the deadline, not even history: the time left is the letters' and the answer's.
        if is_trigger(outcome) and _out_of_time(invocation) is None:
            # After the guard's call, on this worker: the guard has recorded the outcome, so a
            # history write that fails or hangs can neither undo nor repeat the trigger (the
            # adapter never raises).
            self._history.trigger(outcome)
        return outcome

    def _guarded(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        try:
            return self._guard.run(
                request.guard_key,
                request,
                lambda held, attempts: self._trigger_and_follow(held, invocation, attempts),
            )
        except Exception as exc:  # noqa: BLE001 - reported, and kept as a transient failure
            # A bug must cost one portfolio a retry, not the whole batch its progress.
            self._telemetry.unexpected_error(request.portfolio_id)
            return Failed.not_attempted(
                request, TriggerError(f"unexpected {type(exc).__name__} while triggering")
            )

    def _trigger_and_follow(
        self, request: TriggerRequest, invocation: Invocation, attempts: Attempts
    ) -> Outcome:
        """Inside the guard's call: what the guard remembers as triggered has been followed."""
        outcome = self._trigger.trigger(request, invocation, attempts)
        if self._follower is not None:
            try:
                self._follower.start(outcome)
            except Exception:  # noqa: BLE001 - a trigger that happened is never undone by this
                self._telemetry.unexpected_error(request.portfolio_id)
        return outcome

    def _split(self, message: Message, parsed: ParsedInput) -> Settlement:
        """A message naming several portfolios (or rejected ids) split as itself: each id's
        message names this very delivery, so an id an earlier receive (or an earlier version)
        triggered stays done. If the work queue refuses on the last receive, the ids are
        dead-lettered under the same key rather than left to the redrive (whose replay would
        be a new delivery)."""
        try:
            self._intake.queue(parsed)
        except FanOutError as exc:
            if not self._is_last_receive(message):
                raise  # delivered again, split again: the same keys
            refused = FanOutRefusedError(f"the work queue refused the split: {exc}")
            self._letterbox.failures(
                parsed, [Failed.not_attempted(r, refused) for r in parsed.requests]
            )
        return SETTLED

    def _defer(self, held: Failed, invocation: Invocation) -> None:
        """A delayed work-queue message carrying the delivery's key; it becomes visible after
        the longest window any holder can have (this function's timeout, which is this
        invocation's own lifetime). What the holder may be sending right now is its own record
        with the guard (or, if it dies, the window it recorded before sending)."""
        delay = min(MAX_DELAY_SECONDS, math.ceil(invocation.lifetime_seconds) + DEFER_SLACK_SECONDS)
        request = held.request
        message = OutgoingMessage(
            resumed_input(request, may_have_started=request.may_have_started, queued=True),
            delay_seconds=delay,
        )
        try:
            self._work_queue.send([message])
        except FanOutError:
            self._telemetry.deferral_failed(self._work_queue.queue_url, 1)
            raise
        self._telemetry.deferred(1, delay, self._work_queue.queue_url)


def is_trigger(outcome: Outcome) -> bool:
    """Whether the history keeps this outcome: what this delivery did to the portfolio (a
    trigger, or a failure, whatever happens to it next). Not a delivery that came back to a
    settled outcome (nothing was sent: its first delivery's record says it all), nor one held
    by another invocation (the holder writes its own)."""
    if isinstance(outcome, Triggered):
        return not outcome.already_triggered
    return not outcome.remembered and not outcome.held_elsewhere


def _out_of_time(invocation: Invocation) -> NotAttemptedError | None:
    """Past the deadline (its margin kept for letters and the answer): not even the guard is
    asked. Short of it, the guard still is: a portfolio done elsewhere is found done."""
    if invocation.deadline.seconds_left() > 0:
        return None
    return NotAttemptedError("no time left in the invocation before its deadline")
