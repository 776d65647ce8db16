"""SQS batches through Powertools' batch utility: a partial batch response
(ReportBatchItemFailures) listing the records SQS should deliver again.

Imported on the first SQS event, not at init: the batch utility and the data classes it loads
are about half of what the handler's import adds to boto3's, and an execution environment that
only receives schedules and rules never needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent, SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from glider_trigger.processor import SqsMessage, TriggerProcessor
from glider_trigger.trigger import Invocation


class SqsBatchHandler:
    """Triggers every record's portfolios at once, then settles each record on its own."""

    def __init__(self, processor: TriggerProcessor) -> None:
        self._processor = processor
        self._batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def handle(
        self, event: dict[str, Any], context: LambdaContext, invocation: Invocation
    ) -> Mapping[str, object]:
        prepared = self._processor.prepare_sqs_batch(
            [
                SqsMessage(
                    r.message_id,
                    r.body,
                    r.receipt_handle,
                    r.event_source_arn,
                    receive_count=_receive_count(r),
                )
                for r in SQSEvent(event).records
            ],
            invocation,
        )

        def settle_record(record: SQSRecord) -> None:
            self._processor.settle_sqs_record(prepared[record.message_id], invocation)

        return process_partial_response(
            event=event, record_handler=settle_record, processor=self._batch, context=context
        )


def _receive_count(record: SQSRecord) -> int:
    """ApproximateReceiveCount, clamped to at least 1 (absent or unreadable: the first)."""
    attributes = record.raw_event.get("attributes")
    raw = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
    return max(1, int(raw)) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else 1
