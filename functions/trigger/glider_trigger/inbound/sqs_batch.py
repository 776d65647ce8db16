"""One queue's SQS records: each body read as the kind its queue takes, the batch handed to
that queue's use case at once (its portfolios triggered, or its rebalances looked at, on one
worker pool), and each message's settlement turned into what SQS does next: nothing (it is
deleted), a redelivery (ReportBatchItemFailures), or a later one (a visibility timeout).

The same mechanics serve the work queue (domain/delivery.py) and the follow-up queue
(domain/follow_ups.py). Powertools' batch processor calls a handler per record, while the
records' work must share one worker pool: it would have only formatted the list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from glider_trigger.domain.batch import BatchWork
from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import Message
from glider_trigger.domain.ports import BatchReports
from glider_trigger.inbound.visibility import PostponeError, WorkQueueVisibility

_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class SqsRecord:
    """What the function needs of one record of Lambda's SQS event."""

    message: Message
    body: object  # as received: a string, unless the event is broken
    receipt_handle: str
    queue_arn: str

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> SqsRecord:
        body = record.get("body")
        # A body that is not a string is dead-lettered as its JSON text, never parsed as one.
        text = body if isinstance(body, str) else json.dumps(body, default=str)
        return cls(
            Message(record["messageId"], text, _receive_count(record)),
            body,
            str(record.get("receiptHandle", "")),
            str(record.get("eventSourceARN", "")),
        )


class SqsBatchHandler(Generic[_Parsed]):
    def __init__(
        self,
        work: BatchWork[_Parsed, Any],
        parse: Callable[[SqsRecord], _Parsed],
        visibility: WorkQueueVisibility,
        telemetry: BatchReports,
    ) -> None:
        self._work = work
        self._parse = parse  # raises InvalidInputError for a body its queue does not take
        self._visibility = visibility
        self._telemetry = telemetry

    def handle(self, records: Sequence[SqsRecord], invocation: Invocation) -> set[str]:
        """The message ids SQS should deliver again."""
        settlements = self._work.deliver(
            [(record.message, self._parsed(record)) for record in records],
            invocation,
            on_bug=self._telemetry.record_failed,
        )
        again = set()
        for record, settlement in zip(records, settlements, strict=True):
            if settlement.not_before_seconds is not None:
                self._postpone(record, settlement.not_before_seconds, invocation)
            if settlement.redeliver:
                again.add(record.message.message_id)
        return again

    def _parsed(self, record: SqsRecord) -> _Parsed | InvalidInputError:
        try:
            return self._parse(record)
        except InvalidInputError as exc:
            return exc

    def _postpone(self, record: SqsRecord, seconds: float, invocation: Invocation) -> None:
        """A Retry-After longer than the invocation could wait becomes the message's visibility
        timeout, so SQS redelivers it no sooner than the API asked."""
        try:
            timeout = self._visibility.postpone(
                record.queue_arn,
                record.receipt_handle,
                seconds,
                received_seconds_ago=invocation.age_seconds(),
            )
        except PostponeError:
            self._telemetry.postpone_failed(record.message.message_id, seconds)
            return
        self._telemetry.postponed(record.message.message_id, timeout)


def _receive_count(record: Mapping[str, Any]) -> int:
    """ApproximateReceiveCount, clamped to at least 1 (absent or unreadable: the first)."""
    attributes = record.get("attributes")
    raw = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
    digits = isinstance(raw, str) and raw.isascii() and raw.isdigit()
    return max(1, int(raw)) if digits and isinstance(raw, str) else 1
