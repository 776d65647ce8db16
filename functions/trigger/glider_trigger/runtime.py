"""Composition root: builds the real clients once per execution environment and wires them.

Every client is built here and passed in, so that tests and `make run` can hand in their own
(a moto server reached over AWS_ENDPOINT_URL, a PoolManager pointed at the emulator).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import boto3
import urllib3
from aws_lambda_powertools import Logger, Metrics
from botocore.config import Config

from glider_trigger.api_key import ApiKeyProvider
from glider_trigger.config import Settings
from glider_trigger.dead_letter import DeadLetterQueue
from glider_trigger.glider_client import GliderClient, build_pool_manager
from glider_trigger.idempotency import IdempotencyGuard, NoGuard, TriggerGuard
from glider_trigger.lazy import Lazy, LazyClient
from glider_trigger.processor import TriggerProcessor
from glider_trigger.rate_limit import RateLimiter
from glider_trigger.sqs_writer import QueueWriter, WorkQueueWriter
from glider_trigger.telemetry import Telemetry
from glider_trigger.trigger import RebalanceTrigger, RetryPolicy
from glider_trigger.work_queue import WorkQueueVisibility

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

BOTOCORE_DEFAULT_POOL = 10  # botocore's own max_pool_connections


def aws_client_config(max_concurrency: int) -> Config:
    """The SDK retries throttles itself (standard mode); bounded so a dependency outage cannot
    eat the invocation. Endpoint and region come from the standard AWS environment.

    The connection pool holds one connection per worker: every worker calls DynamoDB twice per
    trigger, and botocore's default pool of 10 would make workers beyond the tenth open a new
    TLS connection for each call and throw it away after."""
    return Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=max(BOTOCORE_DEFAULT_POOL, max_concurrency),
    )


def silence_sdk_debug_logs() -> None:
    """botocore logs whole response bodies at DEBUG, and Secrets Manager's holds the key:
    keep SDK and HTTP library loggers at INFO or above whatever the root level is."""
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        sdk_logger = logging.getLogger(name)
        if sdk_logger.getEffectiveLevel() < logging.INFO:
            sdk_logger.setLevel(logging.INFO)


def build_processor(
    settings: Settings,
    *,
    logger: Logger,
    metrics: Metrics,
    sqs_client: SQSClient | None = None,
    secrets_client: SecretsManagerClient | None = None,
    http: urllib3.PoolManager | None = None,
    dynamodb_client: DynamoDBClient | None = None,
) -> TriggerProcessor:
    silence_sdk_debug_logs()
    # Lambda sets AWS_REGION (and AWS_DEFAULT_REGION); botocore itself only reads the latter.
    session = Lazy(lambda: boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None))

    config = aws_client_config(settings.max_concurrency)

    def lazy_client(service: str) -> Any:
        return LazyClient(lambda: session.get().client(service, config=config))  # type: ignore[call-overload]

    sqs: SQSClient = sqs_client or lazy_client("sqs")
    pacing = RateLimiter(settings.rate_limit_per_second)
    api = GliderClient(
        settings.glider_api_base_url,
        connect_timeout_seconds=settings.connect_timeout_seconds,
        read_timeout_seconds=settings.read_timeout_seconds,
        http=http or build_pool_manager(max_connections=settings.max_concurrency),
        rate_limiter=pacing,
    )
    api_keys = ApiKeyProvider(
        settings.api_key_secret_id,
        max_age_seconds=settings.secret_cache_seconds,
        client=secrets_client or lazy_client("secretsmanager"),
    )
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay_seconds=settings.retry_base_delay_seconds,
        max_delay_seconds=settings.retry_max_delay_seconds,
    )
    dead_letters = DeadLetterQueue(settings.dlq_url, client=sqs)
    return TriggerProcessor(
        RebalanceTrigger(api, api_keys, policy, pacing=pacing),
        dead_letters,
        Telemetry(logger, metrics),
        guard=_guard(settings, logger, dynamodb_client or lazy_client("dynamodb")),
        visibility=WorkQueueVisibility(client=sqs),
        default_skip_schedule_validation=settings.default_skip_schedule_validation,
        deadline_margin_seconds=settings.deadline_safety_margin_seconds,
        breaker_threshold=settings.circuit_breaker_threshold,
        attempts_per_portfolio=settings.max_attempts,
        longest_wait_seconds=settings.retry_max_delay_seconds,
        max_concurrency=settings.max_concurrency,
        work_queue=_work_queue(settings, sqs, logger),
        fanout_threshold=settings.fanout_threshold,
        max_receive_count=settings.max_receive_count,
    )


def _work_queue(settings: Settings, sqs: SQSClient, logger: Logger) -> QueueWriter | None:
    if settings.work_queue_url is None:
        logger.warning(
            "WORK_QUEUE_URL is not set: inputs with more than FANOUT_THRESHOLD ids are "
            "triggered inline instead of fanned out"
        )
        return None
    return WorkQueueWriter(settings.work_queue_url, client=sqs)


def _guard(settings: Settings, logger: Logger, client: DynamoDBClient) -> TriggerGuard:
    if settings.idempotency_table_name is None:
        logger.warning(
            "IDEMPOTENCY_TABLE_NAME is not set: running without the duplicate guard, so a "
            "redelivered message or a retried event can trigger a portfolio twice"
        )
        return NoGuard()

    def unrecorded(portfolio_id: str, error: str) -> None:
        logger.error(
            "Rebalance triggered but not recorded in the idempotency table: a redelivery after "
            "this invocation's deadline would trigger it again",
            extra={"portfolio_id": portfolio_id, "detail": error},
        )

    return IdempotencyGuard(
        settings.idempotency_table_name,
        client=client,
        expires_after_seconds=settings.idempotency_ttl_seconds,
        on_unrecorded=unrecorded,
    )
