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


# A trigger Glider accepted (2xx status line) whose answer could not be read to the end.
REBALANCE_ID_UNKNOWN = "REBALANCE_ID_UNKNOWN"


@dataclass(frozen=True)
class Receipt:
    """What Glider returned for a successful trigger."""

    rebalance_id: str | None
    schedule_id: str | None
    request_id: str | None
    correlation_id: str | None
    status: str | None = None
    # Why the 2xx answer's body could not be read (cut off, reset, timed out): Glider accepted
    # the trigger, but its rebalance id is unknown. None for a complete answer.
    unread: str | None = None

    @property
    def reason(self) -> str | None:
        """REBALANCE_ID_UNKNOWN for an accepted trigger whose answer could not be read."""
        return REBALANCE_ID_UNKNOWN if self.unread is not None else None


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

    @property
    def settles_delivery(self) -> bool:
        return True


@dataclass(frozen=True)
class Failed:
    request: TriggerRequest
    error: TriggerError
    failure_class: FailureClass
    attempts: int
    api_latencies_ms: tuple[float, ...] = ()
    maybe_delivered_attempts: int = 0
    # True when an earlier delivery ended with this failure and the guard remembered it (a 2xx
    # that was not a success): the API was not called again.
    remembered: bool = False

    @property
    def settles_delivery(self) -> bool:
        """Glider answered 2xx: this delivery never sends the portfolio again."""
        return self.error.settles_delivery


Outcome = Triggered | Failed
