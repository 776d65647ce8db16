"""Following every rebalance to its outcome, without holding an invocation open for minutes.

A successful trigger schedules a delayed follow-up message; each follow-up reads the
rebalance's state once (one status call) and either schedules the next one, at a growing
interval (FOLLOW_DELAYS: 30 s, 60 s, 2, 4, 8 min, then every 15 min), or ends it with one final
outcome: `completed`, `failed` (with a replayable dead letter, REBALANCE_FAILED: the function
never triggers a failed rebalance again by itself, funds are at stake) or `unknown` (not final
within FOLLOW_MAX_SECONDS). The final outcome is reported once per rebalance, however often a
follow-up message is delivered; the next follow-up is sent once per step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from functools import partial
from typing import Final

from glider_trigger.domain import letters
from glider_trigger.domain.errors import (
    ApiError,
    DeadLetterWriteError,
    FollowUpError,
    OnceInProgressError,
    TriggerError,
)
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    FinalOutcome,
    FollowUp,
    Outcome,
    OutgoingMessage,
    RebalanceState,
    Triggered,
)
from glider_trigger.domain.ports import (
    MAX_DELAY_SECONDS,
    ApiKeySource,
    Clock,
    Deadline,
    FollowReports,
    History,
    MessageQueue,
    OutcomeEvents,
    OutcomeReport,
    Pacing,
    RebalancingApi,
    TriggerGuard,
)
from glider_trigger.domain.slots import CallSlots
from glider_trigger.domain.trigger_input import follow_up_body

# Why an outcome is unknown.
NOT_FINAL_IN_TIME: Final = "NOT_FINAL_IN_TIME"
REBALANCE_ID_UNKNOWN: Final = "REBALANCE_ID_UNKNOWN"
NOT_FOLLOWED: Final = "FOLLOW_UP_NOT_SENT"
VERSION_CHANGED: Final = "API_VERSION_CHANGED"  # started on the other Glider API version
NOT_FOUND_REASON: Final = "REBALANCE_NOT_FOUND"  # the API answered that it knows no such one
NOT_FOUND: Final = "NOT_FOUND"  # the adapters' reason for a 404


def follow_delay(number: int, first_delay_seconds: int) -> int:
    """Seconds before the `number`-th follow-up: the first delay, doubled each time, at most
    15 minutes (SQS's longest DelaySeconds)."""
    return min(MAX_DELAY_SECONDS, first_delay_seconds << min(number - 1, 16))


def most_status_calls(max_seconds: int, first_delay_seconds: int) -> int:
    """The most status calls one rebalance can cost: follow-ups until FOLLOW_MAX_SECONDS."""
    calls, elapsed = 0, 0
    while elapsed < max_seconds:
        calls += 1
        elapsed += max(1, follow_delay(calls, first_delay_seconds))
    return calls + 1  # the look after the deadline decides `unknown`


class OutcomeFollower:
    def __init__(
        self,
        api: RebalancingApi,
        api_keys: ApiKeySource,
        guard: TriggerGuard,
        telemetry: FollowReports,
        *,
        follow_ups: MessageQueue,
        dead_letters: MessageQueue,
        events: OutcomeEvents | None,
        max_seconds: int,
        first_delay_seconds: int,
        clock: Clock,
        pacing: Pacing | None = None,
        history: History,
    ) -> None:
        self._api = api
        self._slots = CallSlots(api, pacing)
        self._api_keys = api_keys
        self._guard = guard
        self._follow_ups = follow_ups
        self._dead_letters = dead_letters
        self._telemetry = telemetry
        self._events = events
        self._max_seconds = max_seconds
        self._first_delay = first_delay_seconds
        self._most_calls = most_status_calls(max_seconds, first_delay_seconds)
        self._clock = clock
        self._history = history

    def start(self, outcome: Outcome) -> None:
        """The first follow-up of the rebalance a trigger just started. Called inside the
        guard's call, before it records the trigger: a delivery remembered as triggered has
        its follow-up sent, and one interrupted before may send it again with its retry. A
        rebalance whose id is unknown cannot be followed: its outcome is `unknown` at once."""
        if not isinstance(outcome, Triggered) or outcome.already_triggered:
            return
        request, now = outcome.request, self._clock.now()
        follow_up = FollowUp(
            request.portfolio_id,
            outcome.receipt.rebalance_id or "",
            request.skip_schedule_validation,
            request.source.dedupe_key,
            now,
            api_version=self._api.version,
        )
        if outcome.receipt.rebalance_id is None:
            self._unknown(
                OutcomeReport(follow_up, FinalOutcome.UNKNOWN, None, REBALANCE_ID_UNKNOWN, now)
            )
            return
        delay = follow_delay(1, self._first_delay)
        try:
            self._follow_ups.send([OutgoingMessage(follow_up_body(follow_up), delay_seconds=delay)])
        except FollowUpError:
            # The trigger happened; failing now would not make it followable again.
            self._telemetry.follow_up_not_sent(self._follow_ups.queue_url, 1)
            self._unknown(OutcomeReport(follow_up, FinalOutcome.UNKNOWN, None, NOT_FOLLOWED, now))

    def _unknown(self, report: OutcomeReport) -> None:
        """An outcome decided with the trigger (it cannot be followed): its log line and event.
        Not through the guard's `once`: this runs inside the guard's own call for the trigger
        (which already makes it once), and Powertools' persistence layer is configured per
        call, so a nested idempotent call would make the outer one record under its prefix.
        Whatever fails here never undoes the trigger."""
        self._report(report)
        if self._events is not None:
            try:
                self._events.publish(report)
            except Exception:  # noqa: BLE001 - logged and counted already; the event is extra
                self._telemetry.event_not_put(report)

    def _report(self, report: OutcomeReport) -> None:
        """The outcome's log line and its history record: one action, so that the guard's
        `once` keeps the record as single as the line (the history never raises)."""
        self._telemetry.rebalance_outcome(report)
        self._history.outcome(report)

    def follow(self, follow_up: FollowUp, invocation: Invocation) -> bool:
        """One look at the rebalance; False when there was no time or no pacing slot for it in
        time (the message is then delivered again). Raises when the outcome or the next
        follow-up could not be written."""
        if self._slots.late(invocation.deadline) is not None:
            return False
        if follow_up.api_version not in (None, self._api.version):
            # Started on another API version than the one configured now: its id means nothing
            # here (and the key may not work there). Said at once, not polled for two hours.
            report = OutcomeReport(
                follow_up, FinalOutcome.UNKNOWN, None, VERSION_CHANGED, self._clock.now()
            )
            self._finish(report)
            return True
        if follow_up.number > self._most_calls:
            # No chain of this function's looks this often within FOLLOW_MAX_SECONDS, whatever
            # the message's triggeredAt says: ended at once, not polled on.
            report = OutcomeReport(
                follow_up, FinalOutcome.UNKNOWN, None, NOT_FINAL_IN_TIME, self._clock.now()
            )
            self._finish(report)
            return True
        read = self._state(follow_up, invocation.deadline)
        if read is None:
            return False  # no slot for the status call before the deadline
        self._telemetry.looked(follow_up)
        now = self._clock.now()
        if isinstance(read, ApiError) and read.reason == NOT_FOUND:
            # The API does not know this rebalance (a permanent answer): it will not appear.
            self._finish(
                OutcomeReport(follow_up, FinalOutcome.UNKNOWN, None, NOT_FOUND_REASON, now)
            )
            return True
        state = read if isinstance(read, RebalanceState) else None
        if state is not None and state.final is not None:
            self._finish(OutcomeReport(follow_up, state.final, state, state.error, now))
        elif now - follow_up.triggered_at >= self._max_seconds:
            self._finish(
                OutcomeReport(follow_up, FinalOutcome.UNKNOWN, state, NOT_FINAL_IN_TIME, now)
            )
        else:
            if state is not None and state.awaiting_user:
                # A person must act before it goes on: said and counted once per rebalance.
                key = f"rebalance:{follow_up.rebalance_id}#awaiting-user"
                with contextlib.suppress(OnceInProgressError):  # its holder says it
                    self._guard.once(key, partial(self._telemetry.awaiting_user, follow_up))
            self._next(follow_up, state, now)
        return True

    def _state(
        self, follow_up: FollowUp, deadline: Deadline
    ) -> RebalanceState | TriggerError | None:
        """The rebalance's state, or why it could not be read; None when the status call got
        no slot before the deadline (it was not made)."""
        try:
            api_key = self._api_keys.get()
            # The slot last, right before the call: the rate is the one the API sees.
            if self._slots.take(deadline) is not None:
                return None
            return self._api.rebalance_state(follow_up, api_key)
        except TriggerError as exc:  # the API's answer, or the key's: looked at again later
            self._telemetry.state_unreadable(follow_up, exc)
            return exc

    def _next(self, follow_up: FollowUp, state: RebalanceState | None, now: float) -> None:
        number = follow_up.number + 1
        left = follow_up.triggered_at + self._max_seconds - now
        delay = min(follow_delay(number, self._first_delay), max(0, math.ceil(left)))
        later = replace(follow_up, number=number)

        def send() -> None:
            try:
                self._follow_ups.send([OutgoingMessage(follow_up_body(later), delay_seconds=delay)])
            except FollowUpError:
                # Its follow-up is delivered again, and this step tried again then.
                self._telemetry.follow_up_not_sent(self._follow_ups.queue_url, 1, again=True)
                raise

        # Once per step: a redelivered follow-up does not start a second chain.
        self._guard.once(f"rebalance:{follow_up.rebalance_id}#follow-up@{number}", send)
        self._telemetry.still_running(follow_up, state.status if state else None, delay)

    def _finish(self, report: OutcomeReport) -> None:
        """The outcome's log line, letter (when it failed) and event: each once per rebalance,
        each under its own key, the log line first, so that a bus that refuses neither hides
        the outcome nor makes a redelivery write the letter again."""
        key = f"rebalance:{report.follow_up.rebalance_id}"  # followed: its id is known
        self._guard.once(f"{key}#outcome", partial(self._report, report))
        if report.outcome is FinalOutcome.FAILED:
            try:
                self._guard.once(
                    f"{key}#letter",
                    partial(self._dead_letters.send, [letters.for_failed_rebalance(report)]),
                )
            except DeadLetterWriteError:
                self._telemetry.dead_letter_write_failed(self._dead_letters.queue_url, 1)
                raise
        if self._events is not None:
            self._guard.once(f"{key}#event", partial(self._events.publish, report))
