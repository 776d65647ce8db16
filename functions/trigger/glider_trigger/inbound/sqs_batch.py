"""SQS batches: each record's body read as the kind its queue takes, every record's portfolios
triggered at once, each record then settled on its own, and a partial batch response
(ReportBatchItemFailures) listing the records SQS should deliver again.

The response is built here rather than by Powertools' batch processor: the processor calls a
handler per record, while the records' triggers must share one worker pool (prepared together,
settled one by one), which left it nothing to do but format this list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glider_trigger.domain.delivery import DeferralError, DeliveryService, Message, PreparedMessage
from glider_trigger.domain.errors import InvalidInputError, QueueWriteError
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import FollowUp, ParsedInput
from glider_trigger.domain.ports import Telemetry
from glider_trigger.inbound.events import parse_record_body
from glider_trigger.inbound.queues import QueueRoles
from glider_trigger.inbound.visibility import PostponeError, WorkQueueVisibility


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


class SqsBatchHandler:
    def __init__(
        self,
        service: DeliveryService,
        visibility: WorkQueueVisibility,
        telemetry: Telemetry,
        *,
        queues: QueueRoles,
        default_skip: bool,
    ) -> None:
        self._service = service
        self._visibility = visibility
        self._telemetry = telemetry
        self._queues = queues
        self._default_skip = default_skip

    def handle(self, event: Mapping[str, Any], invocation: Invocation) -> dict[str, Any]:
        records = [SqsRecord.of(record) for record in event["Records"]]
        prepared = self._service.trigger_messages(
            [(record.message, self._parse(record)) for record in records], invocation
        )
        failures = [
            {"itemIdentifier": record.message.message_id}
            for record, work in zip(records, prepared, strict=True)
            if not self._settled(record, work, invocation)
        ]
        return {"batchItemFailures": failures}

    def _parse(self, record: SqsRecord) -> ParsedInput | FollowUp | InvalidInputError:
        try:
            return parse_record_body(
                record.body,
                queue=self._queues.of(record.queue_arn),
                message_id=record.message.message_id,
                default_skip=self._default_skip,
            )
        except InvalidInputError as exc:
            return exc

    def _settled(self, record: SqsRecord, work: PreparedMessage, invocation: Invocation) -> bool:
        """Whether the record leaves the queue; False when SQS should deliver it again."""
        try:
            settlement = self._service.settle(work, invocation)
        except (QueueWriteError, DeferralError):
            return False  # logged where it happened; SQS keeps the record
        except Exception:  # noqa: BLE001 - a bug costs this record a redelivery, not the batch
            self._telemetry.record_failed(record.message.message_id)
            return False
        if settlement.not_before_seconds is not None:
            self._postpone(record, settlement.not_before_seconds, invocation)
        return not settlement.redeliver

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
    raw = _attribute_number(record, "ApproximateReceiveCount")
    return max(1, raw) if raw is not None else 1


def _attribute_number(record: Mapping[str, Any], name: str) -> int | None:
    """One of the record's system attributes, when it is a string of ASCII digits."""
    attributes = record.get("attributes")
    raw = attributes.get(name) if isinstance(attributes, dict) else None
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None
