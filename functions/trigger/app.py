"""Lambda entry point: decorators, detect the input kind, one call into the processor.

SQS batches get a partial batch response (ReportBatchItemFailures); every other input
(EventBridge Scheduler, an EventBridge rule, a direct invocation) gets a summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from glider_trigger.config import Settings
from glider_trigger.errors import ConfigurationError
from glider_trigger.events import is_sqs_event
from glider_trigger.lazy import Lazy
from glider_trigger.runtime import build_processor

if TYPE_CHECKING:
    from glider_trigger.sqs_batch import SqsBatchHandler

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


def _sqs_batch_handler() -> SqsBatchHandler:
    # Imported on the first SQS event: schedules and rules never load the batch utility.
    from glider_trigger.sqs_batch import SqsBatchHandler  # noqa: PLC0415

    return SqsBatchHandler(processor)


sqs_batches = Lazy(_sqs_batch_handler)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    invocation = processor.begin(context)
    if is_sqs_event(event):
        return sqs_batches.get().handle(event, context, invocation)
    return processor.process_event(event, invocation).as_response()
