"""Composition root: builds the real adapters once per execution environment and wires them.

The one place that knows every concrete class. Tests and `make run` reach the same wiring
through the standard environment (AWS_ENDPOINT_URL to a moto server, GLIDER_API_BASE_URL to
the emulator), so nothing here is replaced for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics

from glider_trigger.domain.delivery import DeliveryRules, DeliveryService
from glider_trigger.domain.errors import DeadLetterWriteError, FanOutError, FollowUpError
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.follow_ups import FollowUpDelivery
from glider_trigger.domain.intake import Intake
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.ports import NO_OUTCOME_EVENTS, History, RebalancingApi
from glider_trigger.domain.reconcile import Reconciler
from glider_trigger.domain.retry import RetryPolicy
from glider_trigger.domain.trigger import RebalanceTrigger
from glider_trigger.inbound.entry import LambdaEntry, Routes
from glider_trigger.inbound.events import follow_up_queue_parser, work_queue_parser
from glider_trigger.inbound.queues import QueueRoles
from glider_trigger.inbound.sqs_batch import SqsBatchHandler
from glider_trigger.inbound.visibility import WorkQueueVisibility
from glider_trigger.outbound.aws import AwsClients, client_config, silence_sdk_debug_logs
from glider_trigger.outbound.clock import SYSTEM_CLOCK
from glider_trigger.outbound.events import EventBridgeOutcomes
from glider_trigger.outbound.glider.http import HttpSession, build_pool_manager
from glider_trigger.outbound.glider.pacing import RateLimiter
from glider_trigger.outbound.guard import IdempotencyGuard
from glider_trigger.outbound.history import DynamoDBHistory, HistoryEntry
from glider_trigger.outbound.queues import QueueWriter
from glider_trigger.outbound.secrets import ApiKeyProvider
from glider_trigger.outbound.telemetry import Telemetry
from glider_trigger.settings import ApiVersion, Settings, TracingMode


@dataclass(frozen=True)
class _Shared:
    """The adapters every use case shares, built once."""

    aws: AwsClients
    telemetry: Telemetry
    pacing: RateLimiter
    api: RebalancingApi
    api_keys: ApiKeyProvider
    guard: IdempotencyGuard
    history: History
    dead_letters: QueueWriter
    events: EventBridgeOutcomes | None


def build_entry(settings: Settings, *, logger: Logger, metrics: Metrics) -> LambdaEntry:
    shared = _shared(settings, logger, metrics)
    follower = _follower(settings, shared)
    events = shared.events or NO_OUTCOME_EVENTS
    letterbox = LetterBox(shared.dead_letters, shared.guard, shared.telemetry, events)
    work_queue = QueueWriter(settings.work_queue_url, client=shared.aws.sqs, error_type=FanOutError)
    intake = Intake(work_queue, letterbox, shared.telemetry, parallelism=settings.max_concurrency)
    service = DeliveryService(
        _trigger(settings, shared),
        shared.guard,
        letterbox,
        work_queue,
        shared.telemetry,
        intake=intake,
        rules=DeliveryRules(
            max_concurrency=settings.max_concurrency,
            max_receive_count=settings.max_receive_count,
        ),
        follower=follower,
        history=shared.history,
    )
    return LambdaEntry(
        _routes(settings, shared, intake, service, follower, letterbox),
        begin=lambda deadline, lifetime: service.begin(deadline, lifetime_seconds=lifetime),
        on_invocation=shared.guard.register,
        deadline_margin_seconds=settings.deadline_safety_margin_seconds,
        default_skip=settings.default_skip_schedule_validation,
    )


def _shared(settings: Settings, logger: Logger, metrics: Metrics) -> _Shared:
    silence_sdk_debug_logs()
    # Lambda sets AWS_REGION (and AWS_DEFAULT_REGION); botocore itself only reads the latter.
    aws = AwsClients(
        client_config(settings.max_concurrency), region=os.environ.get("AWS_REGION") or None
    )
    telemetry = Telemetry(logger, metrics)
    # One limiter for every request to Glider: triggers, their lookups and status calls.
    pacing = RateLimiter(settings.rate_limit_per_second)
    bus = settings.outcome_event_bus_name
    return _Shared(
        aws=aws,
        telemetry=telemetry,
        pacing=pacing,
        api=_api(settings, pacing, telemetry, logger),
        api_keys=ApiKeyProvider(
            settings.api_key_secret_id,
            max_age_seconds=settings.secret_cache_seconds,
            client=aws.secretsmanager,
        ),
        guard=_guard(settings, logger, aws),
        history=_history(settings, telemetry, aws),
        dead_letters=QueueWriter(settings.dlq_url, client=aws.sqs, error_type=DeadLetterWriteError),
        events=EventBridgeOutcomes(bus, client=aws.events) if bus else None,
    )


def _follower(settings: Settings, shared: _Shared) -> OutcomeFollower | None:
    if not settings.follow_outcomes or settings.follow_up_queue_url is None:
        return None
    return OutcomeFollower(
        shared.api,
        shared.api_keys,
        shared.guard,
        shared.telemetry,
        follow_ups=QueueWriter(
            settings.follow_up_queue_url, client=shared.aws.sqs, error_type=FollowUpError
        ),
        dead_letters=shared.dead_letters,
        events=shared.events,
        max_seconds=settings.follow_max_seconds,
        first_delay_seconds=settings.follow_first_delay_seconds,
        clock=SYSTEM_CLOCK,
        pacing=shared.pacing,
        history=shared.history,
    )


def _routes(  # noqa: PLR0917 - the pieces of one wiring, in the order they were built
    settings: Settings,
    shared: _Shared,
    intake: Intake,
    service: DeliveryService,
    follower: OutcomeFollower | None,
    letterbox: LetterBox,
) -> Routes:
    """Events to the intake; the work queue's records to the triggers; the follow-up queue's to
    the follow-ups."""
    telemetry = shared.telemetry
    visibility = WorkQueueVisibility(client=shared.aws.sqs)
    follow_ups = FollowUpDelivery(follower, letterbox, max_concurrency=settings.max_concurrency)
    return Routes(
        intake,
        SqsBatchHandler(
            service,
            work_queue_parser(default_skip=settings.default_skip_schedule_validation),
            visibility,
            telemetry,
        ),
        SqsBatchHandler(follow_ups, follow_up_queue_parser, visibility, telemetry),
        QueueRoles(settings.follow_up_queue_url),
    )


def _api(
    settings: Settings, pacing: RateLimiter, telemetry: Telemetry, logger: Logger
) -> RebalancingApi:
    api = _glider(settings, pacing, telemetry)
    if settings.tracing is not TracingMode.ACTIVE:
        return api
    # Imported here, not at the top: the X-Ray SDK costs cold-start time, so an environment
    # without tracing never loads it. Before the first AWS client: botocore gets patched.
    from glider_trigger.outbound.tracing import TracedApi, tracer  # noqa: PLC0415

    return TracedApi(api, tracer(logger.service))


def _trigger(settings: Settings, shared: _Shared) -> RebalanceTrigger:
    policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_delay_seconds=settings.retry_base_delay_seconds,
        max_delay_seconds=settings.retry_max_delay_seconds,
        breaker_threshold=settings.circuit_breaker_threshold,
    )
    api, pacing = shared.api, shared.pacing
    reconciler = Reconciler(api, shared.telemetry, clock=SYSTEM_CLOCK, pacing=pacing)
    return RebalanceTrigger(
        api, shared.api_keys, policy, clock=SYSTEM_CLOCK, pacing=pacing, reconciler=reconciler
    )


def _glider(settings: Settings, pacing: RateLimiter, telemetry: Telemetry) -> RebalancingApi:
    session = HttpSession(
        settings.glider_api_base_url,
        connect_timeout_seconds=settings.connect_timeout_seconds,
        read_timeout_seconds=settings.read_timeout_seconds,
        http=build_pool_manager(max_connections=settings.max_concurrency),
    )
    # Each client imported here, not at the top: an environment loads only the one it talks to.
    if settings.glider_api_version is ApiVersion.V2:
        from glider_trigger.outbound.glider.v2 import GliderV2Client  # noqa: PLC0415

        return GliderV2Client(session, rate_limiter=pacing, on_ignored=telemetry.option_ignored)
    from glider_trigger.outbound.glider.v1 import GliderV1Client  # noqa: PLC0415

    return GliderV1Client(session, rate_limiter=pacing)


def _guard(settings: Settings, logger: Logger, aws: AwsClients) -> IdempotencyGuard:
    def unrecorded(portfolio_id: str, what: str, error: str) -> None:
        logger.error(
            f"Outcome not recorded in the idempotency table ({what}): the record keeps the window "
            "recorded before sending, which a redelivery after this deadline looks at first",
            extra={"portfolio_id": portfolio_id, "detail": error},
        )

    return IdempotencyGuard(
        settings.idempotency_table_name,
        client=aws.dynamodb,
        expires_after_seconds=settings.idempotency_ttl_seconds,
        on_unrecorded=unrecorded,
    )


def _history(settings: Settings, telemetry: Telemetry, aws: AwsClients) -> History:
    """In the guard's table, kept as long as the guard remembers."""

    def not_written(entry: HistoryEntry, error: str) -> None:
        what = f"{entry.kind.value} {entry.outcome}"
        telemetry.history_not_written(entry.portfolio_id, what, error)

    return DynamoDBHistory(
        settings.idempotency_table_name,
        client=aws.dynamodb,
        keep_seconds=settings.idempotency_ttl_seconds,
        on_not_written=not_written,
    )
