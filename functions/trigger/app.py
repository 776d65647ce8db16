"""Lambda entry point: Powertools' decorators around one call into the composition's entry.

SQS batches get a partial batch response (ReportBatchItemFailures); every other input
(EventBridge Scheduler, an EventBridge rule, a direct invocation) gets a summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from glider_trigger.composition import build_entry
from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.settings import Settings

if TYPE_CHECKING:  # an annotation only: not imported at init
    from aws_lambda_powertools.utilities.typing import LambdaContext

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
entry = build_entry(settings, logger=logger, metrics=metrics)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
    return entry.handle(event, context)
