"""Plain values passed between the parser, the trigger service and the processor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from glider_trigger.errors import FailureClass, TriggerError


class SourceKind(StrEnum):
    SCHEDULE = "schedule"  # EventBridge Scheduler or a rule target with constant input
    EVENTBRIDGE = "eventbridge"  # an event envelope from a bus
    SQS = "sqs"
    DIRECT = "direct"  # any other direct invocation (CLI, SDK, a replayed DLQ body)
    LAMBDA_DESTINATION = "lambda-destination"  # an on-failure record of this function


@dataclass(frozen=True)
class InputSource:
    """Where an input came from; kept for logs and, later, de-duplication."""

    kind: SourceKind
    delivery_id: str | None = None  # SQS messageId or EventBridge event id
    metadata: Mapping[str, str] = field(default_factory=dict)
    # What makes a second delivery of the same work recognisable (see events.py); None when
    # only the Lambda request id can tell, which the processor then uses.
    dedupe_key: str | None = None


@dataclass(frozen=True)
class TriggerRequest:
    portfolio_id: str
    skip_schedule_validation: bool
    source: InputSource


@dataclass(frozen=True)
class RejectedId:
    """An id that failed validation: it is dead-lettered, the rest of the input goes on."""

    portfolio_id: object
    skip_schedule_validation: bool
    error: TriggerError


@dataclass(frozen=True)
class ParsedInput:
    source: InputSource
    requests: tuple[TriggerRequest, ...]
    rejected: tuple[RejectedId, ...] = ()


@dataclass(frozen=True)
class Receipt:
    """What Glider returned for a successful trigger."""

    rebalance_id: str | None
    schedule_id: str | None
    request_id: str | None
    correlation_id: str | None
    status: str | None = None


@dataclass(frozen=True)
class Triggered:
    request: TriggerRequest
    receipt: Receipt
    attempts: int
    api_latencies_ms: tuple[float, ...] = ()
    # True when this delivery had been triggered before: the API was not called again.
    already_triggered: bool = False
    # Earlier attempts whose request left but whose answer was lost: each may have triggered too.
    maybe_delivered_attempts: int = 0


@dataclass(frozen=True)
class Failed:
    request: TriggerRequest
    error: TriggerError
    failure_class: FailureClass
    attempts: int
    api_latencies_ms: tuple[float, ...] = ()
    maybe_delivered_attempts: int = 0


Outcome = Triggered | Failed
