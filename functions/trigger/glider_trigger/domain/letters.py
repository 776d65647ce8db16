"""The dead letter: one replayable message per failure, and the attributes that say why.

A message's body is itself a valid input of this function ({"portfolioId", "skipScheduleValidation",
"deliveryKey"} for a failed portfolio; the original input, verbatim, for an input that could not
be parsed), so moving the DLQ back to the work queue replays it. A failed portfolio's letter names
its delivery: replayed after that delivery triggered the portfolio after all (a Lambda retry, a
redelivery), it finds that success and triggers nothing twice. Its message attributes say why it
is there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from glider_trigger.domain.errors import (
    ApiError,
    ApiFacts,
    RebalanceFailedError,
    TriggerError,
    classify,
)
from glider_trigger.domain.models import (
    AttributeValue,
    Failed,
    InputSource,
    OutgoingMessage,
    RejectedId,
    SourceKind,
)
from glider_trigger.domain.ports import OutcomeReport
from glider_trigger.domain.trigger_input import resumed_input, trigger_input

# SQS allows 10 attributes a message; extra facts are folded into "detail" instead.
MAX_ATTRIBUTES: Final = 10
_MAX_DETAIL_CHARS: Final = 1024


def for_failure(failed: Failed, *, now: datetime | None = None) -> OutgoingMessage:
    request = failed.request
    return OutgoingMessage(
        body=resumed_input(request, may_have_started=failed.uncertain),
        attributes=_attributes(failed.error, failed.attempts, request.source, now),
    )


def for_failed_rebalance(report: OutcomeReport, *, now: datetime | None = None) -> OutgoingMessage:
    """A rebalance Glider reports failed: its body triggers the portfolio afresh when replayed,
    once however often the letter is replayed (its key names the failed rebalance)."""
    follow_up = report.follow_up
    error = RebalanceFailedError(
        f"rebalance {follow_up.rebalance_id} failed: {report.reason or 'no error given'}"
    )
    source = InputSource(SourceKind.FOLLOW_UP, delivery_id=follow_up.rebalance_id)
    return OutgoingMessage(
        body=trigger_input(
            follow_up.portfolio_id,
            follow_up.skip_schedule_validation,
            idempotency_key=f"retrigger:{follow_up.rebalance_id}",
        ),
        attributes=_attributes(error, 0, source, now),
    )


def for_rejected_id(
    rejected: RejectedId, source: InputSource, *, now: datetime | None = None
) -> OutgoingMessage:
    return OutgoingMessage(
        body=trigger_input(rejected.portfolio_id, rejected.skip_schedule_validation),
        attributes=_attributes(rejected.error, 0, source, now),
    )


def for_unparsable_input(
    raw_body: str, error: TriggerError, source: InputSource, *, now: datetime | None = None
) -> OutgoingMessage:
    """The input exactly as received, so nothing about it is lost."""
    return OutgoingMessage(body=raw_body, attributes=_attributes(error, 0, source, now))


def _attributes(
    error: TriggerError,
    attempts: int,
    source: InputSource,
    now: datetime | None,
) -> dict[str, AttributeValue]:
    failed_at = now or datetime.now(UTC)
    return _fitted(
        [
            ("failureClass", classify(error).value),
            ("reason", error.reason),
            ("detail", str(error)[:_MAX_DETAIL_CHARS] or error.reason),
            ("attempts", attempts),
            ("source", _source_ref(source)),
            ("failedAt", failed_at.isoformat(timespec="milliseconds")),
            *_api_facts(error, failed_at),
        ]
    )


def _source_ref(source: InputSource) -> str:
    if source.queued_by is not None:
        return source.queued_by  # a queued message's letter names where its delivery came in
    ref = source.delivery_id or source.metadata.get("scheduleArn")
    return f"{source.kind.value}:{ref}" if ref else source.kind.value


def _api_facts(error: TriggerError, failed_at: datetime) -> list[tuple[str, AttributeValue | None]]:
    """What Glider said, when it said anything."""
    facts = error.facts if isinstance(error, ApiError) else ApiFacts()
    wait = error.retry_after_seconds
    retry_at = (failed_at + timedelta(seconds=wait)).isoformat(timespec="seconds") if wait else None
    return [
        ("httpStatus", facts.http_status),
        # When Glider said a retry may succeed: a replay before then is likely to fail again.
        ("retryAt", retry_at),
        ("apiErrorCode", facts.code),
        ("gliderRequestId", facts.request_id),
        ("gliderCorrelationId", facts.correlation_id),
    ]


def _fitted(candidates: list[tuple[str, AttributeValue | None]]) -> dict[str, AttributeValue]:
    """The present attributes, at most MAX_ATTRIBUTES; the rest folded into "detail"."""
    present = [(name, value) for name, value in candidates if value not in (None, "")]
    kept: dict[str, AttributeValue] = {
        name: value for name, value in present[:MAX_ATTRIBUTES] if value is not None
    }
    overflow = [f"{name}={value}" for name, value in present[MAX_ATTRIBUTES:]]
    if overflow:
        # The folded facts go last but are never the part cut off.
        suffix = f" ({', '.join(overflow)})"
        kept["detail"] = str(kept["detail"])[: _MAX_DETAIL_CHARS - len(suffix)] + suffix
    return kept
