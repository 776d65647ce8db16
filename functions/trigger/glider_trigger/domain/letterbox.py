"""Writing dead letters: a batch to the DLQ, each portfolio's letter announced on the bus after.

A letter whose failure settled its delivery (the API may have acted) is written once per
delivery and transport, through the guard, however often the delivery comes back. An event
that cannot be put is logged and counted, never a failure (the letter is the record; a retry
would write it twice). Only a DLQ that cannot be written fails the caller (DeadLetterWriteError),
so that what was to be lettered stays where it was (the message, or Lambda's retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from glider_trigger.domain import letters
from glider_trigger.domain.errors import DeadLetterWriteError, InvalidInputError
from glider_trigger.domain.models import Failed, InputSource, OutgoingMessage, ParsedInput
from glider_trigger.domain.ports import (
    NO_OUTCOME_EVENTS,
    FailedTriggerLetter,
    LetterReports,
    MessageQueue,
    OutcomeEvents,
    TriggerGuard,
)


class LetterBox:
    def __init__(
        self,
        dead_letters: MessageQueue,
        guard: TriggerGuard,
        telemetry: LetterReports,
        events: OutcomeEvents = NO_OUTCOME_EVENTS,
    ) -> None:
        self._dead_letters = dead_letters
        self._guard = guard
        self._telemetry = telemetry
        self._events = events

    def unparsable(self, raw: str, error: InvalidInputError, source: InputSource) -> None:
        """An input that is not one: dead-lettered verbatim, under where it came from. It names
        no portfolio: the DLQ's new-letter alarm announces it."""
        self._telemetry.received(0)
        self._send([letters.for_unparsable_input(raw, error, source)])
        self._telemetry.unparsable(error, source)

    def failures(self, parsed: ParsedInput, failures: Sequence[Failed]) -> None:
        """An input's rejected ids and failed portfolios, in one batched write; a failure that
        settled its delivery through the guard, once per delivery and transport (see
        TriggerRequest.letter_key)."""
        plain = [_letter(f) for f in failures if not f.settles_delivery]
        self._write([*self._rejected(parsed), *plain])
        for failure in failures:
            if failure.settles_delivery:
                write = partial(self._write, [_letter(failure)])
                self._guard.once(failure.request.letter_key, write)

    def _rejected(self, parsed: ParsedInput) -> list[FailedTriggerLetter]:
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

    def _write(self, written: Sequence[FailedTriggerLetter]) -> None:
        """Portfolios' letters, then their events: an event only for a letter written."""
        self._send([w.letter for w in written])
        if not written:
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


def _letter(failure: Failed) -> FailedTriggerLetter:
    request = failure.request
    return FailedTriggerLetter(
        request.portfolio_id, request.source.dedupe_key, letters.for_failure(failure)
    )
