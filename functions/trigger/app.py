"""Lambda entry point: decorators, detect the input kind, one call into the processor.

SQS batches get a partial batch response (ReportBatchItemFailures); every other input
(EventBridge Scheduler, an EventBridge rule, a direct invocation) gets a summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent, SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from glider_trigger.config import Settings
from glider_trigger.errors import ConfigurationError
from glider_trigger.events import is_sqs_event
from glider_trigger.processor import SqsMessage
from glider_trigger.runtime import build_processor

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "glider-rebalance-trigger")
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "GliderRebalanceTrigger"
)

try:
    settings = Settings.from_environment()
except ConfigurationError:
    logger.exception("Invalid configuration: the function cannot start")
    raise

# Built once per execution environment and reused by every warm invocation.
processor = build_processor(settings, logger=logger, metrics=metrics)
batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    invocation = processor.begin(context)
    if is_sqs_event(event):
        prepared = processor.prepare_sqs_batch(
            [
                SqsMessage(r.message_id, r.body, r.receipt_handle, r.event_source_arn)
                for r in SQSEvent(event).records
            ],
            invocation,
        )

        def settle_record(record: SQSRecord) -> None:
            processor.settle_sqs_record(prepared[record.message_id])

        return process_partial_response(
            event=event, record_handler=settle_record, processor=batch_processor, context=context
        )
    return processor.process_event(event, invocation).as_response()
