"""The use case: deliver an input's triggers, with the delivery semantics of how it arrived.

- An event (EventBridge, Scheduler, a direct invocation): every failure is dead-lettered and a
  report is returned; only a DLQ that cannot be written makes the invocation fail (so that
  Lambda's retries and the on-failure destination keep the event).
- A redeliverable message (SQS): a permanent failure is dead-lettered at once (the record then
  leaves the work queue); a transient or systemic one asks for redelivery, no sooner than the
  API's Retry-After. On its last receive (MAX_RECEIVE_COUNT) what is left is dead-lettered here,
  with letters that name the delivery, instead of leaving the whole message to the redrive.
- Inputs with more ids than the fan-out threshold go to the work queue, one message per id.
- A portfolio whose delivery another invocation holds "in progress" (on events) is deferred: a
  delayed work-queue message carrying the delivery's key looks at it again once the holder's
  window has passed, and finds it triggered or triggers it. Without a work queue (or if that
  send fails) the invocation fails, so that Lambda retries it later.
- A failure after which the API may have acted (a 2xx that was not a success) is remembered by
  the guard; its dead letter is written once per delivery, however often the delivery comes back.
- Each letter of a portfolio (a failed trigger, a rejected id) is announced once written: one
  event on the outcome bus naming the portfolio (a notice, with NotifyEachFailure). An event
  that cannot be put is logged and counted, never a failure. An input that could not be parsed
  names no portfolio: its letter is announced by the DLQ alarm alone.

Triggers run on a bounded worker pool; logs, metrics and DLQ writes happen on the invocation's
own thread once the workers are done.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeGuard, TypeVar

from glider_trigger.domain import letters
from glider_trigger.domain.errors import (
    DeadLetterWriteError,
    FailureClass,
    FanOutError,
    FanOutRefusedError,
    InvalidInputError,
    NotAttemptedError,
    OnceInProgressError,
    TriggerError,
    classify,
)
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    Failed,
    FollowUp,
    InputSource,
    Next,
    Outcome,
    OutgoingMessage,
    ParsedInput,
    RejectedId,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.domain.ports import (
    MAX_DELAY_SECONDS,
    NO_HISTORY,
    Attempts,
    Deadline,
    FailedTriggerLetter,
    History,
    MessageQueue,
    OutcomeEvents,
    Telemetry,
    TriggerGuard,
)
from glider_trigger.domain.trigger import RebalanceTrigger
from glider_trigger.domain.trigger_input import invocation_key, resumed_input, trigger_input

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
# A deferred portfolio is looked at again this long after the holder's longest window.
DEFER_SLACK_SECONDS = 5


class DeferralError(Exception):
    """Portfolios held in progress elsewhere could not be deferred to the work queue: the
    invocation fails, so that Lambda retries it (and the retry finds them done, or does them)."""


@dataclass(frozen=True, kw_only=True)
class DeliveryRules:
    max_concurrency: int  # workers triggering in parallel
    fanout_threshold: int  # more ids than this in one event go to the work queue
    # The work queue's maxReceiveCount (None: the redrive has the last word).
    max_receive_count: int | None


@dataclass(frozen=True)
class Message:
    """An input carried by a message that its queue delivers again unless it is settled. What
    its earlier receives may have started is the guard's record, never inferred from these."""

    message_id: str
    body: str
    receive_count: int = 1  # this is the n-th receive


@dataclass
class PreparedMessage:
    """One message after its portfolios were triggered (or its rebalance looked at), before its
    fate is settled."""

    message: Message
    parsed: ParsedInput | None
    error: InvalidInputError | None
    outcomes: list[Outcome] = field(default_factory=list)
    follow_up: FollowUp | None = None
    # The look at a follow-up's rebalance: done, not done (no time left), or what it raised.
    followed: bool | Exception = False
    # More ids than one invocation should hold: fanned out to this queue, one message each,
    # when settled.
    fan_out: MessageQueue | None = None


@dataclass(frozen=True)
class Settlement:
    """A message's fate: settled (it leaves the queue), or delivered again, no sooner than
    `not_before_seconds` when the API asked for longer than an invocation waits."""

    redeliver: bool
    not_before_seconds: float | None = None
    why: str = ""


@dataclass
class Report:
    """What an event's delivery did: shown to the caller."""

    source: InputSource
    outcomes: list[Outcome] = field(default_factory=list)
    rejected: tuple[RejectedId, ...] = ()
    fanned_out: int = 0
    unparsable: InvalidInputError | None = None


class DeliveryService:
    def __init__(
        self,
        trigger: RebalanceTrigger,
        guard: TriggerGuard,
        dead_letters: MessageQueue,
        telemetry: Telemetry,
        *,
        rules: DeliveryRules,
        work_queue: MessageQueue | None,
        follower: OutcomeFollower | None = None,
        history: History = NO_HISTORY,
        events: OutcomeEvents | None = None,
    ) -> None:
        self._trigger = trigger
        self._guard = guard
        self._dead_letters = dead_letters
        self._telemetry = telemetry
        self._rules = rules
        self._work_queue = work_queue
        self._follower = follower
        self._history = history
        self._events = events

    def begin(self, deadline: Deadline, *, request_id: str, lifetime_seconds: float) -> Invocation:
        """Fresh per-invocation state: the deadline, and no halt or open circuit yet."""
        return Invocation(
            deadline,
            self._trigger.policy,
            request_id=request_id,
            lifetime_seconds=lifetime_seconds,
        )

    # ------------------------------------------------------------------------- events

    def reject_event(self, raw: str, error: InvalidInputError, source: InputSource) -> Report:
        """An event that is not an input: dead-lettered verbatim, under where it came from."""
        self._telemetry.received(0)
        self._send([letters.for_unparsable_input(raw, error, source)])
        self._telemetry.unparsable(error, source)
        return Report(source, unparsable=error)

    def deliver_event(self, parsed: ParsedInput, invocation: Invocation) -> Report:
        parsed = _with_delivery_key(parsed, invocation)
        work_queue = self._fan_out_queue(parsed)
        if work_queue is not None:
            # Counted as received when each work-queue message is processed, not twice.
            self._telemetry.received(len(parsed.rejected))
            return self._fan_out(parsed, work_queue)
        self._telemetry.received(len(parsed.requests) + len(parsed.rejected))
        outcomes = self.trigger_all(parsed.requests, invocation)
        # Outcomes are logged before the DLQ write, so a failing DLQ does not hide what was done.
        for outcome in outcomes:
            failure = Next.DEFERRED if _elsewhere(outcome) else Next.DEAD_LETTERED
            self._telemetry.outcome(outcome, action=_action(outcome, failure))

        # A portfolio held in progress by another invocation is looked at again once that
        # holder's window has passed; no dead letter (a replay would be a second trigger).
        # Letters first: if the deferral then fails, the invocation fails with them written.
        failures = [o for o in outcomes if isinstance(o, Failed) and not _elsewhere(o)]
        self._dead_letter(self._rejected_letters(parsed), failures)
        self._defer([o for o in outcomes if _elsewhere(o)], invocation)
        return Report(parsed.source, outcomes, parsed.rejected)

    # ------------------------------------------------------------------------- messages

    def trigger_messages(
        self,
        messages: Sequence[tuple[Message, ParsedInput | FollowUp | InvalidInputError]],
        invocation: Invocation,
    ) -> list[PreparedMessage]:
        """Trigger all the messages' portfolios at once, on the worker pool, and look at the
        rebalances of the follow-ups among them; `settle` then applies each message's delivery
        semantics."""
        prepared: list[PreparedMessage] = []
        requests: list[tuple[PreparedMessage, TriggerRequest]] = []
        follow_ups: list[PreparedMessage] = []
        for message, parsed in messages:
            if isinstance(parsed, InvalidInputError):
                prepared.append(PreparedMessage(message, None, parsed))
                continue
            if isinstance(parsed, FollowUp):
                follow_ups.append(PreparedMessage(message, None, None, follow_up=parsed))
                prepared.append(follow_ups[-1])
                continue
            record = PreparedMessage(message, parsed, None)
            prepared.append(record)
            record.fan_out = self._fan_out_queue(parsed)
            if record.fan_out is not None:
                # Never worked inline, on any receive: its redelivery or redrive then never
                # holds more work than an invocation has time for, and its ids carry its key.
                continue
            requests.extend((record, request) for request in parsed.requests)
        outcomes = self.trigger_all([request for _, request in requests], invocation)
        for (record, _), outcome in zip(requests, outcomes, strict=True):
            record.outcomes.append(outcome)
        follower = self._follower
        if follower is not None:
            self._on_pool(lambda record: _look(follower, record, invocation), follow_ups)
        return prepared

    def settle(self, record: PreparedMessage, invocation: Invocation) -> Settlement:
        message, parsed = record.message, record.parsed
        if record.follow_up is not None:
            return self._settle_follow_up(record)
        if parsed is None:
            assert record.error is not None  # noqa: S101  # nosec B101 - one of the two is set
            self._telemetry.received(0)
            source = InputSource(SourceKind.SQS, delivery_id=message.message_id)
            self._send([letters.for_unparsable_input(message.body, record.error, source)])
            self._telemetry.unparsable(record.error, source)
            return Settlement(redeliver=False)

        if record.fan_out is not None:
            return self._split(record, parsed, record.fan_out)
        self._telemetry.received(len(parsed.requests) + len(parsed.rejected))
        failures = [outcome for outcome in record.outcomes if isinstance(outcome, Failed)]
        permanent = [f for f in failures if f.failure_class == FailureClass.PERMANENT]
        retry = [f for f in failures if f.failure_class != FailureClass.PERMANENT]
        # On its last receive the queue would move the whole message to the DLQ, where a replay
        # (a new message id) would trigger again what it had triggered: its letters name the
        # delivery instead.
        last = bool(retry) and self._is_last_receive(message)
        held = [f for f in retry if _elsewhere(f)] if last else []

        def fate(outcome: Outcome) -> Next:
            if any(outcome is h for h in held):
                return Next.DEFERRED
            if any(outcome is f for f in retry):
                return Next.DEAD_LETTERED_LAST_RECEIVE if last else Next.RETRY
            return Next.DEAD_LETTERED

        for outcome in record.outcomes:
            self._telemetry.outcome(outcome, action=_action(outcome, fate(outcome)))
        if last:
            rest = [f for f in retry if not any(f is h for h in held)]
            self._dead_letter(self._rejected_letters(parsed), permanent + rest)
            self._defer(held, invocation)
            return Settlement(redeliver=False)
        self._dead_letter(self._rejected_letters(parsed), permanent)
        if not retry:
            return Settlement(redeliver=False)
        # A Retry-After the invocation waited out needs nothing more; a longer one becomes the
        # earliest redelivery (the queue's own visibility timeout is longer than the former).
        waits = [
            wait
            for f in retry
            if (wait := f.error.retry_after_seconds) and not self._trigger.policy.waits_for(wait)
        ]
        reasons = ", ".join(f"{o.request.portfolio_id}: {o.error.reason}" for o in retry)
        return Settlement(
            redeliver=True,
            not_before_seconds=max(waits) if waits else None,
            why=f"message {message.message_id} will be redelivered ({reasons})",
        )

    def _settle_follow_up(self, record: PreparedMessage) -> Settlement:
        if self._follower is None:  # FOLLOW_OUTCOMES was switched off since it was sent
            return Settlement(redeliver=False)
        if isinstance(record.followed, OnceInProgressError):
            # Another follow-up of the same rebalance (two deliveries that got one rebalance,
            # or a redelivery) is writing its outcome right now: looked at again later, when
            # it is done or, if its holder died, is done by this one.
            return Settlement(redeliver=True, why=str(record.followed))
        if isinstance(record.followed, Exception):
            raise record.followed  # the outcome or the next follow-up was not written
        if not record.followed:
            return Settlement(redeliver=True, why="no time left to look at the rebalance")
        return Settlement(redeliver=False)

    def _is_last_receive(self, message: Message) -> bool:
        limit = self._rules.max_receive_count
        return limit is not None and message.receive_count >= limit

    # ------------------------------------------------------------------------- shared

    def trigger_all(
        self, requests: Sequence[TriggerRequest], invocation: Invocation
    ) -> list[Outcome]:
        """On a bounded worker pool over the shared keep-alive connection pool."""
        return self._on_pool(lambda request: self._trigger_one(request, invocation), requests)

    def _on_pool(self, work: Callable[[_Item], _Result], items: Sequence[_Item]) -> list[_Result]:
        workers = self._rules.max_concurrency
        if workers <= 1 or len(items) <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(
            max_workers=min(workers, len(items)), thread_name_prefix="trigger"
        ) as pool:
            return list(pool.map(work, items))

    def _trigger_one(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        blocker = invocation.blocker() or _out_of_time(invocation)
        if blocker is not None:  # decided before touching the idempotency store
            outcome: Outcome = _not_attempted(request, blocker)
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
            return _not_attempted(
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

    def _split(
        self, record: PreparedMessage, parsed: ParsedInput, work_queue: MessageQueue
    ) -> Settlement:
        """A message fanned out as itself: each id's message names this very delivery, so an
        id an earlier receive (or an earlier version) triggered inline stays done. If the work
        queue refuses on the last receive, the ids are dead-lettered under the same key rather
        than left to the redrive (whose replay would be a new delivery)."""
        self._telemetry.received(len(parsed.rejected))
        try:
            self._fan_out(parsed, work_queue, same_delivery=True)
        except FanOutError as exc:
            if not self._is_last_receive(record.message):
                raise  # delivered again, fanned out again: the same keys
            refused = FanOutRefusedError(f"the work queue refused the fan-out: {exc}")
            not_sent = [_letter(_not_attempted(r, refused)) for r in parsed.requests]
            # The ids it rejected too: the fan-out would have lettered them after its send.
            self._send_letters([*self._rejected_letters(parsed), *not_sent])
        return Settlement(redeliver=False)

    def _fan_out_queue(self, parsed: ParsedInput) -> MessageQueue | None:
        """Where an input with more ids than the threshold is fanned out (None: worked inline)."""
        if len(parsed.requests) > self._rules.fanout_threshold:
            return self._work_queue
        return None

    def _fan_out(
        self, parsed: ParsedInput, work_queue: MessageQueue, *, same_delivery: bool = False
    ) -> Report:
        """Too many ids for one invocation: one work-queue message each, spread by the SQS
        event source over concurrent invocations. Each carries the delivery's key, so a retry
        of this fan-out (or a duplicate of its input) triggers nothing twice: an event's as the
        `idempotencyKey` of a delivery derived from it (as fan-outs always have been keyed), a
        message's as its own `deliveryKey` (the same records as if it were worked inline)."""
        messages = [
            OutgoingMessage(
                resumed_input(request)
                if same_delivery
                else trigger_input(
                    request.portfolio_id,
                    request.skip_schedule_validation,
                    idempotency_key=parsed.source.dedupe_key,
                )
            )
            for request in parsed.requests
        ]
        try:
            work_queue.send(messages, parallelism=self._rules.max_concurrency)
        except FanOutError:
            self._telemetry.fan_out_failed(work_queue.queue_url, len(messages))
            raise
        self._telemetry.fanned_out(len(messages), work_queue.queue_url, parsed.source)
        self._send_letters(self._rejected_letters(parsed))
        return Report(parsed.source, rejected=parsed.rejected, fanned_out=len(messages))

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
        # What the holder may be sending right now is its own record with the guard (or, if it
        # dies, the window it recorded before sending): looked at when this comes back.
        messages = [
            OutgoingMessage(
                resumed_input(f.request, may_have_started=f.request.may_have_started),
                delay_seconds=delay,
            )
            for f in held
        ]
        try:
            self._work_queue.send(messages)
        except FanOutError as exc:
            self._telemetry.deferral_failed(self._work_queue.queue_url, len(messages))
            raise DeferralError(str(exc)) from exc
        self._telemetry.deferred(len(messages), delay, self._work_queue.queue_url)

    def _dead_letter(self, rejected: list[FailedTriggerLetter], failures: Sequence[Failed]) -> None:
        """The letters of an input: rejected ids and failures in one batched write; a failure
        that settled its delivery (the API may have acted) through the guard, once per
        delivery and transport (see TriggerRequest.letter_key), its event with it."""
        plain = [_letter(f) for f in failures if not f.settles_delivery]
        self._send_letters(rejected + plain)
        for failure in failures:
            if failure.settles_delivery:
                self._guard.once(
                    failure.request.letter_key,
                    partial(self._send_letters, [_letter(failure)]),
                )

    def _rejected_letters(self, parsed: ParsedInput) -> list[FailedTriggerLetter]:
        for rejected in parsed.rejected:
            self._telemetry.rejected(rejected.portfolio_id, rejected.error, parsed.source)
        return [
            FailedTriggerLetter(
                str(r.portfolio_id),
                parsed.source.dedupe_key,
                letters.for_rejected_id(r, parsed.source),
            )
            for r in parsed.rejected
        ]

    def _send_letters(self, written: Sequence[FailedTriggerLetter]) -> None:
        """Portfolios' letters, then their events: an event only for a letter written, and one
        that cannot be put fails nothing (the letter is the record; a retry would write it
        twice)."""
        self._send([w.letter for w in written])
        if self._events is None or not written:
            return
        try:
            self._events.trigger_failed(written)
        except Exception:  # noqa: BLE001 - logged and counted; the letters are the record
            self._telemetry.letter_events_not_put(written)

    def _send(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        try:
            self._dead_letters.send(messages)
        except DeadLetterWriteError:
            self._telemetry.dead_letter_write_failed(self._dead_letters.queue_url, len(messages))
            raise
        self._telemetry.dead_lettered(len(messages))


def is_trigger(outcome: Outcome) -> bool:
    """Whether the history keeps this outcome: what this delivery did to the portfolio (a
    trigger, or a failure, whatever happens to it next). Not a delivery that came back to a
    settled outcome (nothing was sent: its first delivery's record says it all), nor one held
    by another invocation (the holder writes its own)."""
    if isinstance(outcome, Triggered):
        return not outcome.already_triggered
    return not outcome.remembered and not outcome.held_elsewhere


def _with_delivery_key(parsed: ParsedInput, invocation: Invocation) -> ParsedInput:
    """The input with its delivery key settled: its own, else the invocation's request id,
    which Lambda keeps across its own retries of an asynchronous invocation (the same form as
    an on-failure destination record's key, so replaying one keeps it)."""
    if parsed.source.dedupe_key is not None:
        return parsed
    source = replace(parsed.source, dedupe_key=invocation_key(invocation.request_id))
    requests = tuple(replace(request, source=source) for request in parsed.requests)
    return replace(parsed, source=source, requests=requests)


def _look(follower: OutcomeFollower, record: PreparedMessage, invocation: Invocation) -> None:
    """One follow-up's look, on a worker; what it raised is settled on the invocation's thread."""
    if record.follow_up is None:
        return
    try:
        record.followed = follower.follow(record.follow_up, invocation)
    except Exception as exc:  # noqa: BLE001 - the message is then delivered again
        record.followed = exc


def _out_of_time(invocation: Invocation) -> NotAttemptedError | None:
    """Past the deadline (its margin kept for letters and the answer): not even the guard is
    asked. Short of it, the guard still is: a portfolio done elsewhere is found done."""
    if invocation.deadline.seconds_left() > 0:
        return None
    return NotAttemptedError("no time left in the invocation before its deadline")


def _letter(failure: Failed) -> FailedTriggerLetter:
    request = failure.request
    return FailedTriggerLetter(
        request.portfolio_id, request.source.dedupe_key, letters.for_failure(failure)
    )


def _not_attempted(request: TriggerRequest, error: TriggerError) -> Failed:
    """Failed before any attempt: what an earlier attempt may have started stays to look for."""
    return Failed(request, error, classify(error), attempts=0, uncertain=request.may_have_started)


def _elsewhere(outcome: Outcome) -> TypeGuard[Failed]:
    """Held in progress by another invocation."""
    return isinstance(outcome, Failed) and outcome.held_elsewhere


def _action(outcome: Outcome, failure_action: Next) -> Next:
    """Where an outcome goes next, for its log line: `failure_action` for a failure."""
    if isinstance(outcome, Failed) and outcome.remembered:
        return Next.NOTHING_DEAD_LETTERED_BEFORE
    return failure_action
