"""An event's input taken in: validated, then queued as one work-queue message per portfolio.

Every input that is not an SQS record (EventBridge Scheduler, a rule, a bus event, a direct
invocation, an on-failure destination record) arrives here, and nothing here triggers: each of
its portfolios becomes a work-queue message that carries the delivery's key, so that the work
queue's one settle/redelivery semantics (domain/delivery.py) decide every trigger. A retry of
the event (Lambda's own, with the same request id, or a duplicate event) queues the same keys
again, and what a first copy triggered is found done.

Failures here are the event's: a work queue or a DLQ that cannot be written raises, so that
Lambda retries the event and, after its retries, the on-failure destination keeps it. Rejected
ids and an input that is not one are dead-lettered at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from glider_trigger.domain.errors import FanOutError, InvalidInputError
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import InputSource, OutgoingMessage, ParsedInput, RejectedId
from glider_trigger.domain.ports import DeliveryReports, MessageQueue
from glider_trigger.domain.trigger_input import invocation_key, resumed_input


@dataclass(frozen=True)
class Accepted:
    """What an event's invocation did, as its caller sees it: messages queued (each portfolio is
    triggered from the work queue), ids rejected, or the input refused."""

    source: InputSource
    queued: int = 0
    rejected: tuple[RejectedId, ...] = ()
    unparsable: InvalidInputError | None = None


class Intake:
    def __init__(
        self,
        work_queue: MessageQueue,
        letterbox: LetterBox,
        telemetry: DeliveryReports,
        *,
        parallelism: int,
    ) -> None:
        self._work_queue = work_queue
        self._letterbox = letterbox
        self._telemetry = telemetry
        self._parallelism = parallelism

    def refuse(self, raw: str, error: InvalidInputError, source: InputSource) -> Accepted:
        """An event that is not an input: dead-lettered verbatim."""
        self._letterbox.unparsable(raw, error, source)
        return Accepted(source, unparsable=error)

    def accept(self, parsed: ParsedInput, *, request_id: str) -> Accepted:
        """Queue each portfolio under the delivery's key, then dead-letter the rejected ids."""
        parsed = _keyed(parsed, request_id)
        return Accepted(parsed.source, self.queue(parsed), parsed.rejected)

    def queue(self, parsed: ParsedInput) -> int:
        """One work-queue message per portfolio under the input's own key, then its rejected ids
        dead-lettered; how many were queued. Raises FanOutError (reported) when the work queue
        refuses: nothing is dead-lettered then, and the caller decides what becomes of it."""
        # Each queued portfolio is counted as received when its message is processed.
        self._telemetry.received(len(parsed.rejected))
        # What an attempt of this delivery may have started (a replayed letter's window) goes
        # with it: its trigger looks there before sending again.
        messages = [
            OutgoingMessage(
                resumed_input(request, may_have_started=request.may_have_started, queued=True)
            )
            for request in parsed.requests
        ]
        try:
            self._work_queue.send(messages, parallelism=self._parallelism)
        except FanOutError:
            self._telemetry.fan_out_failed(self._work_queue.queue_url, len(messages))
            raise
        if messages:
            self._telemetry.queued(len(messages), self._work_queue.queue_url, parsed.source)
        self._letterbox.failures(parsed, ())
        return len(messages)


def _keyed(parsed: ParsedInput, request_id: str) -> ParsedInput:
    """The input with its delivery key settled: its own, else the invocation's request id,
    which Lambda keeps across its own retries of an asynchronous invocation (the same form as
    an on-failure destination record's key, so replaying one keeps it)."""
    if parsed.source.dedupe_key is not None:
        return parsed
    source = replace(parsed.source, dedupe_key=invocation_key(request_id))
    requests = tuple(replace(request, source=source) for request in parsed.requests)
    return replace(parsed, source=source, requests=requests)
