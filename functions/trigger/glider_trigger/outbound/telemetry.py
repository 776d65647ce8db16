"""Logs and metrics at the boundary: one structured line per portfolio outcome, EMF metrics.

Implements the domain's Telemetry port on Powertools' Logger and Metrics. Field names are stable
(dashboards and the `make run` summary read them). Nothing here ever receives the API key:
outcomes and errors do not carry it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from glider_trigger.domain.errors import (
    ApiError,
    Certainty,
    FailureClass,
    SystemicHaltError,
    TriggerError,
    classify,
)
from glider_trigger.domain.models import (
    Failed,
    FinalOutcome,
    FollowUp,
    InputSource,
    Next,
    Outcome,
    OutcomeKind,
    Triggered,
    kind_of,
)
from glider_trigger.domain.ports import FailedTriggerLetter, OutcomeReport
from glider_trigger.domain.trigger_input import iso_time

METRIC_RECEIVED = "PortfolioIdsReceived"
METRIC_TRIGGERED = "RebalancesTriggered"
METRIC_FAILED = "TriggerFailures"  # with a FailureClass dimension
METRIC_DEAD_LETTERED = "DeadLettered"
METRIC_DUPLICATES = "DuplicateDeliveriesSkipped"
METRIC_QUEUED = "PortfoliosQueued"
METRIC_SYSTEMIC = "SystemicFailures"  # one per systemic error seen, not per id it stopped
METRIC_API_LATENCY = "GliderApiLatency"
METRIC_ID_UNKNOWN = "TriggeredWithoutRebalanceId"  # accepted (2xx) but the answer was cut off
METRIC_DEFERRED = "PortfoliosDeferred"  # held in progress elsewhere: looked at again later
METRIC_RECONCILED = "RebalancesReconciled"  # a lost answer's rebalance found: not sent again
METRIC_RECONCILE_FAILED = "ReconcileFailures"  # the list could not be read: sent again
METRIC_OUTCOMES = {
    FinalOutcome.COMPLETED: "RebalancesCompleted",
    FinalOutcome.FAILED: "RebalancesFailed",
    FinalOutcome.UNKNOWN: "RebalanceOutcomeUnknown",
}
METRIC_DURATION = "RebalanceDurationSeconds"
METRIC_FOLLOW_UPS = "RebalanceStatusCalls"  # one per follow-up message
METRIC_AWAITING_USER = "RebalancesAwaitingUser"  # once per rebalance that waits for a person
METRIC_JOINED = "TriggersJoinedInFlight"  # answered with a rebalance already running (v2)
METRIC_HISTORY_NOT_WRITTEN = "HistoryNotWritten"  # an entry `glider-trigger history` misses
METRIC_EVENTS_NOT_PUT = "OutcomeEventsNotPut"  # an outcome's or a failed trigger's event (notice)


class Telemetry:
    def __init__(self, logger: Logger, metrics: Metrics) -> None:
        self._logger = logger
        self._metrics = metrics

    def received(self, count: int) -> None:
        """Ids that entered (0 for an unparsable input): the base every other count adds up to."""
        self._metrics.add_metric(METRIC_RECEIVED, MetricUnit.Count, count)

    def outcome(self, outcome: Outcome, *, action: Next) -> None:
        """`action` says where a failure goes next: dead-lettered, or retry (SQS redelivery)."""
        for latency in outcome.api_latencies_ms:
            self._metrics.add_metric(METRIC_API_LATENCY, MetricUnit.Milliseconds, latency)
        fields: dict[str, Any] = {
            "portfolio_id": outcome.request.portfolio_id,
            "attempts": outcome.attempts,
            **source_fields(outcome.request.source),
        }
        if outcome.maybe_delivered_attempts:
            # Glider has no idempotency key: an attempt whose answer was lost may have
            # triggered a rebalance too. Support needs these to reconcile.
            fields["maybe_delivered_attempts"] = outcome.maybe_delivered_attempts
        if isinstance(outcome, Triggered):
            self._triggered(outcome, fields)
            return
        self._failure(outcome, fields, action)

    def _triggered(self, outcome: Triggered, fields: dict[str, Any]) -> None:
        self._count_triggered(outcome)
        receipt = outcome.receipt
        fields |= _receipt_fields(outcome)
        flagged = (
            outcome.maybe_delivered_attempts
            or receipt.unread is not None
            or (receipt.joined and not outcome.already_triggered)
        )
        log = self._logger.warning if flagged else self._logger.info
        log(
            _triggered_message(outcome),
            extra={
                **fields,
                "outcome": kind_of(outcome),
                "rebalance_id": receipt.rebalance_id,
                "schedule_id": receipt.schedule_id,
                "glider_request_id": receipt.request_id,
                "glider_correlation_id": receipt.correlation_id,
            },
        )

    def _count_triggered(self, outcome: Triggered) -> None:
        receipt = outcome.receipt
        if outcome.already_triggered:
            self._metrics.add_metric(METRIC_DUPLICATES, MetricUnit.Count, 1)
            return
        if receipt.joined:
            # Glider joined it to a rebalance in flight: none started, counted as joined.
            self._metrics.add_metric(METRIC_JOINED, MetricUnit.Count, 1)
        else:
            self._metrics.add_metric(METRIC_TRIGGERED, MetricUnit.Count, 1)
        if receipt.unread is not None:
            self._metrics.add_metric(METRIC_ID_UNKNOWN, MetricUnit.Count, 1)
        if receipt.reconciled:
            self._metrics.add_metric(METRIC_RECONCILED, MetricUnit.Count, 1)

    def rejected(self, portfolio_id: object, error: TriggerError, source: InputSource) -> None:
        self._count_failure(error, FailureClass.PERMANENT)
        self._logger.warning(
            "Portfolio id rejected",
            extra={
                "portfolio_id": str(portfolio_id)[:140],
                "outcome": OutcomeKind.FAILED,
                "action": Next.DEAD_LETTERED,
                "failure_class": FailureClass.PERMANENT,
                "attempts": 0,
                **error_fields(error),
                **source_fields(source),
            },
        )

    def unparsable(self, error: TriggerError, source: InputSource) -> None:
        self._count_failure(error, FailureClass.PERMANENT)
        self._logger.warning(
            "Input rejected",
            extra={
                "outcome": OutcomeKind.FAILED,
                "action": Next.DEAD_LETTERED,
                "failure_class": FailureClass.PERMANENT,
                "attempts": 0,
                **error_fields(error),
                **source_fields(source),
            },
        )

    def queued(self, count: int, queue_url: str, source: InputSource) -> None:
        self._metrics.add_metric(METRIC_QUEUED, MetricUnit.Count, count)
        self._logger.info(
            "Input queued: one work-queue message per portfolio",
            extra={"queued": count, "work_queue_url": queue_url, **source_fields(source)},
        )

    def deferred(self, count: int, delay_seconds: int, queue_url: str) -> None:
        self._metrics.add_metric(METRIC_DEFERRED, MetricUnit.Count, count)
        self._logger.info(
            "Portfolios held in progress elsewhere deferred to the work queue",
            extra={"deferred": count, "delay_seconds": delay_seconds, "work_queue_url": queue_url},
        )

    def dead_lettered(self, count: int) -> None:
        self._metrics.add_metric(METRIC_DEAD_LETTERED, MetricUnit.Count, count)

    def fan_out_failed(self, queue_url: str, messages: int) -> None:
        self._logger.exception(
            "Queueing portfolios to the work queue failed; the input is delivered again",
            extra={"work_queue_url": queue_url, "messages": messages},
        )

    def deferral_failed(self, queue_url: str, messages: int) -> None:
        self._logger.exception(
            "Deferring portfolios held in progress elsewhere failed; the invocation fails "
            "so that it is retried",
            extra={"work_queue_url": queue_url, "messages": messages},
        )

    def dead_letter_write_failed(self, queue_url: str, messages: int) -> None:
        self._logger.exception(
            "Dead-letter queue write failed; the invocation fails so that AWS keeps the input",
            extra={"dlq_url": queue_url, "messages": messages},
        )

    def unexpected_error(self, portfolio_id: str) -> None:
        self._logger.exception(
            "Unexpected error while triggering", extra={"portfolio_id": portfolio_id}
        )

    def postponed(self, delivery_id: str, visibility_timeout_seconds: int) -> None:
        self._logger.info(
            "Message postponed for its Retry-After",
            extra={
                "delivery_id": delivery_id,
                "visibility_timeout_seconds": visibility_timeout_seconds,
            },
        )

    def postpone_failed(self, delivery_id: str, retry_after_seconds: float) -> None:
        # The default visibility timeout still brings the message back: a warning, no failure.
        self._logger.warning(
            "Could not postpone the message for its Retry-After",
            exc_info=True,
            extra={"delivery_id": delivery_id, "retry_after_seconds": retry_after_seconds},
        )

    def reconcile_failed(self, portfolio_id: str, error: TriggerError) -> None:
        self._metrics.add_metric(METRIC_RECONCILE_FAILED, MetricUnit.Count, 1)
        self._unread(
            "Could not read the portfolio's recent rebalances; sending the trigger again",
            error,
            {"portfolio_id": portfolio_id},
        )

    def reconcile_forbidden(self, error: TriggerError) -> None:
        self._logger.warning(
            "The API key may not read rebalance status: lost answers are no longer reconciled "
            "in this execution environment (a repeat after one is flagged maybe_delivered)",
            extra=error_fields(error),
        )

    def rebalance_outcome(self, report: OutcomeReport) -> None:
        self._metrics.add_metric(METRIC_OUTCOMES[report.outcome], MetricUnit.Count, 1)
        duration = report.duration_seconds
        if duration is not None:
            self._metrics.add_metric(METRIC_DURATION, MetricUnit.Seconds, duration)
        log = (
            self._logger.info if report.outcome is FinalOutcome.COMPLETED else self._logger.warning
        )
        log(
            f"Rebalance {report.outcome}",
            # Not `outcome`: that field is a trigger's (triggered, failed, ...), and a dashboard
            # counting failed triggers must not count failed rebalances.
            extra={"rebalance_outcome": report.outcome, **outcome_fields(report)},
        )

    def letter_events_not_put(self, letters: Sequence[FailedTriggerLetter]) -> None:
        self._logger.exception(
            "The failed triggers' events could not be put on the bus (their letters are "
            "written: the DLQ alarm still says how many)",
            extra={"portfolio_ids": [letter.portfolio_id for letter in letters]},
        )
        self._metrics.add_metric(METRIC_EVENTS_NOT_PUT, MetricUnit.Count, len(letters))

    def event_not_put(self, report: OutcomeReport) -> None:
        self._logger.exception(
            "The outcome event could not be put on the bus (the outcome is logged above)",
            extra={"rebalance_outcome": report.outcome, **outcome_fields(report)},
        )
        self._metrics.add_metric(METRIC_EVENTS_NOT_PUT, MetricUnit.Count, 1)

    def looked(self, follow_up: FollowUp) -> None:
        self._metrics.add_metric(METRIC_FOLLOW_UPS, MetricUnit.Count, 1)

    def still_running(self, follow_up: FollowUp, status: str | None, next_in: int) -> None:
        self._logger.debug(
            "Rebalance not final yet; looked at again later",
            extra={
                "portfolio_id": follow_up.portfolio_id,
                "rebalance_id": follow_up.rebalance_id,
                "rebalance_status": status,
                "follow_up": follow_up.number,
                "next_follow_up_seconds": next_in,
            },
        )

    def awaiting_user(self, follow_up: FollowUp) -> None:
        self._metrics.add_metric(METRIC_AWAITING_USER, MetricUnit.Count, 1)
        self._logger.warning(
            "Rebalance awaits a person: it goes on only once the portfolio's owner acts in "
            "Glider; still followed",
            extra={
                "portfolio_id": follow_up.portfolio_id,
                "rebalance_id": follow_up.rebalance_id,
                "rebalance_status": "awaiting_user",
            },
        )

    def option_ignored(self, option: str, why: str) -> None:
        """An input's option this API version has no meaning for (said once per environment)."""
        self._logger.warning(f"{option} is ignored: {why}", extra={"option": option})

    def state_unreadable(self, follow_up: FollowUp, error: TriggerError) -> None:
        self._unread(
            "Could not read the rebalance's state; looked at again later",
            error,
            {"portfolio_id": follow_up.portfolio_id, "rebalance_id": follow_up.rebalance_id},
        )

    def _unread(self, message: str, error: TriggerError, fields: dict[str, Any]) -> None:
        """A status call that failed. A systemic failure there (a route that does not exist, a
        refused key) fails every such call the same way: counted and logged like a trigger's,
        so that its alarm fires although the caller goes on."""
        failure_class = classify(error)
        if failure_class is FailureClass.SYSTEMIC:
            self._metrics.add_metric(METRIC_SYSTEMIC, MetricUnit.Count, 1)
            self._logger.error(
                message,
                extra={**fields, "failure_class": failure_class.value, **error_fields(error)},
            )
            return
        self._logger.warning(message, extra={**fields, **error_fields(error)})

    def follow_up_not_sent(self, queue_url: str, messages: int, *, again: bool = False) -> None:
        what = (
            "the follow-up that sent them is delivered again"
            if again
            else "these rebalances are not followed (their outcome is reported unknown)"
        )
        self._logger.exception(
            f"The follow-up queue refused messages: {what}",
            extra={"follow_up_queue_url": queue_url, "messages": messages},
        )

    def history_not_written(self, portfolio_id: str, what: str, error: str) -> None:
        """A history entry that could not be written (outbound/history.py): counted and said;
        the trigger or the outcome it was about is unaffected."""
        self._metrics.add_metric(METRIC_HISTORY_NOT_WRITTEN, MetricUnit.Count, 1)
        self._logger.warning(
            "History entry not written: `glider-trigger history` misses it (the trigger or "
            "outcome itself is unaffected)",
            extra={"portfolio_id": portfolio_id, "history_entry": what, "detail": error},
        )

    def record_failed(self, delivery_id: str) -> None:
        """A record that raised while it was settled: SQS delivers it again."""
        self._logger.exception(
            "Settling the record failed; it will be redelivered",
            extra={"delivery_id": delivery_id},
        )

    def _failure(self, outcome: Failed, fields: dict[str, Any], action: Next) -> None:
        if outcome.remembered:
            # Counted when it happened; this delivery came back and nothing was sent again.
            self._metrics.add_metric(METRIC_DUPLICATES, MetricUnit.Count, 1)
            self._logger.warning(
                "Rebalance trigger failed for an earlier delivery after Glider answered 2xx; "
                "not sent again",
                extra={
                    **fields,
                    "outcome": kind_of(outcome),
                    "action": action,
                    "failure_class": outcome.failure_class.value,
                    **error_fields(outcome.error),
                },
            )
            return
        self._count_failure(outcome.error, outcome.failure_class)
        if outcome.failure_class is FailureClass.SYSTEMIC and not isinstance(
            outcome.error, SystemicHaltError
        ):
            self._metrics.add_metric(METRIC_SYSTEMIC, MetricUnit.Count, 1)
        systemic = outcome.failure_class is FailureClass.SYSTEMIC
        log = self._logger.error if systemic else self._logger.warning
        log(
            "Rebalance trigger failed",
            extra={
                **fields,
                "outcome": kind_of(outcome),
                "action": action,
                "failure_class": outcome.failure_class.value,
                **error_fields(outcome.error),
            },
        )

    def _count_failure(self, error: TriggerError, failure_class: FailureClass) -> None:
        # A dimension per class would apply to every metric of the invocation's blob, so each
        # failure is its own EMF record.
        with single_metric(
            name=METRIC_FAILED,
            unit=MetricUnit.Count,
            value=1,
            namespace=self._metrics.namespace,
            default_dimensions=self._metrics.default_dimensions,
        ) as metric:
            metric.add_dimension(name="FailureClass", value=failure_class)
            metric.add_dimension(name="Reason", value=error.reason)


def _receipt_fields(outcome: Triggered) -> dict[str, Any]:
    receipt = outcome.receipt
    fields: dict[str, Any] = {}
    if receipt.unread is not None:
        fields |= {"reason": receipt.reason, "detail": receipt.unread}
    if receipt.reconciled:
        fields["reconciled"] = True
    if receipt.joined and not outcome.already_triggered:
        # Glider answered with a rebalance already in flight: nothing new started. Said at
        # WARNING with its age: a rebalance stuck in flight absorbs every trigger.
        fields["joined_in_flight"] = True
        if receipt.submitted_at is not None:
            fields["in_flight_since"] = iso_time(receipt.submitted_at)
            fields["in_flight_seconds"] = round(max(0.0, time.time() - receipt.submitted_at))
    return fields


def _triggered_message(outcome: Triggered) -> str:
    if outcome.already_triggered:
        return "Rebalance already triggered by an earlier delivery; not triggered again"
    if outcome.receipt.unread is not None:
        return "Rebalance triggered, but Glider's answer was cut off: rebalance id unknown"
    if outcome.receipt.joined:
        return "Trigger joined the rebalance already in flight: Glider started no new one"
    return "Rebalance triggered"


def outcome_fields(report: OutcomeReport) -> dict[str, Any]:
    """A final outcome's facts, as its log line and its event carry them (camelCase in the
    event, snake_case in the log)."""
    follow_up, state = report.follow_up, report.state
    fields: dict[str, Any] = {
        "portfolio_id": follow_up.portfolio_id,
        "rebalance_id": follow_up.rebalance_id or None,
        "delivery_key": follow_up.delivery_key,
        "triggered_at": iso_time(follow_up.triggered_at),
        "follow_ups": follow_up.number,
        "reason": report.reason,
    }
    if state is not None:
        fields |= {
            "rebalance_status": state.status,
            "transaction_hash": state.transaction_hash,
            "block_number": state.block_number,
            "gas_used": state.gas_used,
            "start_time": iso_time(state.started_at) if state.started_at else None,
            "close_time": iso_time(state.closed_at) if state.closed_at else None,
            "duration_seconds": report.duration_seconds,
        }
    return {name: value for name, value in fields.items() if value is not None}


def error_fields(error: TriggerError) -> dict[str, Any]:
    fields: dict[str, Any] = {"reason": error.reason, "detail": str(error)}
    if isinstance(error, ApiError):
        fields |= {
            "http_status": error.facts.http_status,
            "api_error_code": error.facts.code,
            "glider_request_id": error.facts.request_id,
            "glider_correlation_id": error.facts.correlation_id,
            "retry_after_seconds": error.retry_after_seconds,
        }
        if not error.certainty.answered:
            # Said of every unanswered call, true or false: the chaos run counts the true ones.
            fields["maybe_delivered"] = error.certainty is Certainty.LOST
    return {name: value for name, value in fields.items() if value is not None}


def source_fields(source: InputSource) -> dict[str, Any]:
    fields: dict[str, Any] = {"source": source.kind.value}
    if source.delivery_id:
        fields["delivery_id"] = source.delivery_id
    if source.metadata:
        fields["source_metadata"] = dict(source.metadata)
    if source.queued_by is not None:
        fields["queued_by"] = source.queued_by  # where the delivery came in (an event, a split)
    return fields
