"""Plain values passed between the layers: requests, receipts, outcomes, messages, the key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Final

from glider_trigger.domain.errors import (
    DuplicateInProgressError,
    FailureClass,
    TriggerError,
    classify,
)


class SourceKind(StrEnum):
    SCHEDULE = "schedule"  # EventBridge Scheduler or a rule target with constant input
    EVENTBRIDGE = "eventbridge"  # an event envelope from a bus
    SQS = "sqs"
    DIRECT = "direct"  # any other direct invocation (CLI, SDK, a replayed DLQ body)
    LAMBDA_DESTINATION = "lambda-destination"  # an on-failure record of this function
    FOLLOW_UP = "follow-up"  # a rebalance followed to its outcome


_KINDS: Final = frozenset(kind.value for kind in SourceKind)
# A delivery key at most this long is used as it is; a longer one is hashed (see delivery_key).
MAX_KEY_CHARS: Final = 256


def delivery_key(kind: str, value: str) -> str:
    """`kind:value`, or `kind:sha256:<hex of value>` when that would exceed MAX_KEY_CHARS:
    bounded (it travels in message bodies) and never shared by two different values."""
    key = f"{kind}:{value}"
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:sha256:{digest}"


@dataclass(frozen=True)
class InputSource:
    """Where an input came from; kept for logs and, later, de-duplication."""

    kind: SourceKind
    delivery_id: str | None = None  # SQS messageId or EventBridge event id
    metadata: Mapping[str, str] = field(default_factory=dict)
    # What makes a second delivery of the same work recognisable (see trigger_input.py); None
    # when only the Lambda request id can tell, which the inbound adapter then uses.
    dedupe_key: str | None = None
    # On a message the function queued itself (an event's portfolio, a split, a deferral): the
    # transport that first carried the delivery in (`<kind>:<delivery id>`). Queued again (a
    # retried event, a redelivered many-id message), a copy is a new message of that transport.
    queued_by: str | None = None

    @property
    def transport(self) -> str:
        """What carried the delivery in: the transport that queued it, else this one (bounded
        as a key is: it travels in the bodies of the messages it queues)."""
        if self.queued_by is not None:
            return self.queued_by
        if not self.delivery_id:
            return self.kind.value
        return delivery_key(self.kind.value, self.delivery_id)

    @property
    def origin(self) -> SourceKind:
        """The kind of input the delivery began as: the transport that queued this message,
        else this one's (a dead letter replayed is a delivery of its own)."""
        kind = (self.queued_by or "").split(":", 1)[0]
        return SourceKind(kind) if kind in _KINDS else self.kind


@dataclass(frozen=True)
class Window:
    """When an earlier attempt of a delivery may have started a rebalance whose answer never
    came back: from `after` to `before` (epoch seconds; None: up to now)."""

    after: float
    before: float | None = None

    def joined(self, other: Window | None) -> Window:
        """The smallest window holding both."""
        if other is None:
            return self
        open_ended = self.before is None or other.before is None
        before = None if open_ended else max(self.before or 0.0, other.before or 0.0)
        return Window(min(self.after, other.after), before)


def merged(windows: Sequence[Window]) -> tuple[Window, ...]:
    """The same times as fewer windows: overlapping ones (an open one reaches to now) as one."""
    result: list[Window] = []
    for window in sorted(windows, key=lambda w: w.after):
        last = result[-1] if result else None
        if last is not None and (last.before is None or window.after <= last.before):
            result[-1] = last.joined(window)
        else:
            result.append(window)
    return tuple(result)


def hull(windows: Sequence[Window]) -> Window | None:
    """The smallest window holding them all (None for none): what one dead letter's body says."""
    joined: Window | None = None
    for window in windows:
        joined = window.joined(joined)
    return joined


@dataclass(frozen=True)
class TriggerRequest:
    portfolio_id: str
    skip_schedule_validation: bool
    source: InputSource
    # Earlier attempts of this delivery whose answers prove nothing (a lost answer, a 5xx) may
    # have started a rebalance in these windows, as the guard recorded them or a dead letter
    # carried them: looked for before the first POST. Never a window guessed from outside.
    may_have_started: tuple[Window, ...] = ()

    @property
    def guard_key(self) -> str:
        """What the guard remembers this portfolio's trigger under: per portfolio per delivery."""
        return f"{self.source.dedupe_key}#{self.portfolio_id}"

    @property
    def letter_key(self) -> str:
        """What the guard remembers a settled failure's dead letter under: once per delivery and
        transport (the event or message that carried the delivery in, whichever copy of it was
        queued), so a redelivery or retry never writes it twice, while a replay of the letter (a
        new message) writes it again."""
        return f"{self.guard_key}#dead-letter@{self.source.transport}"


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
    _: KW_ONLY  # the facts below by name: a value in the wrong place is refused
    # Why the 2xx answer's body could not be read (cut off, reset, timed out): Glider accepted
    # the trigger, but its rebalance id is unknown. None for a complete answer.
    unread: str | None = None
    # Found among the portfolio's recent rebalances, started by an attempt whose answer was
    # lost: nothing was sent again.
    reconciled: bool = False
    # When the request of an answer cut off was sent (epoch seconds), to look for its rebalance.
    sent_at: float | None = None
    # When the API says the rebalance was submitted (epoch seconds; v2's submittedAt).
    submitted_at: float | None = None
    # The API answered with a rebalance submitted before this attempt and still in flight (v2
    # collapses a repeat into it): nothing new was started, by this attempt or an earlier one.
    joined: bool = False

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
    # When this delivery's attempts whose answers prove nothing were sent, and not looked at
    # since (the guard records them and its dead letter carries them, so a redelivery or a
    # replay looks for their rebalance before sending again).
    uncertain: tuple[Window, ...] = ()

    @classmethod
    def not_attempted(cls, request: TriggerRequest, error: TriggerError) -> Failed:
        """Failed before any attempt: what an earlier attempt may have started stays to look
        for (on a redelivery or a replay)."""
        return cls(request, error, classify(error), attempts=0, uncertain=request.may_have_started)

    @property
    def settles_delivery(self) -> bool:
        """The API answered 2xx: this delivery never sends the portfolio again."""
        return self.error.settles_delivery

    @property
    def held_elsewhere(self) -> bool:
        """Another invocation holds this delivery in progress: not a failure to dead-letter."""
        return isinstance(self.error, DuplicateInProgressError)


Outcome = Triggered | Failed


class OutcomeKind(StrEnum):
    """What happened to one portfolio, as its log line says."""

    TRIGGERED = "triggered"
    ALREADY_TRIGGERED = "already-triggered"  # an earlier delivery triggered it: not sent again
    FAILED = "failed"
    ALREADY_FAILED = "already-failed"  # an earlier delivery's settled failure: not sent again


class Next(StrEnum):
    """Where a failed portfolio goes next (its log line's action)."""

    DEAD_LETTERED = "dead-lettered"
    DEAD_LETTERED_LAST_RECEIVE = "dead-lettered: last receive"
    RETRY = "retry"  # the SQS record is redelivered
    DEFERRED = "deferred: in progress elsewhere"
    NOTHING_DEAD_LETTERED_BEFORE = "none: dead-lettered by an earlier delivery"


def kind_of(outcome: Outcome) -> OutcomeKind:
    if isinstance(outcome, Triggered):
        return OutcomeKind.ALREADY_TRIGGERED if outcome.already_triggered else OutcomeKind.TRIGGERED
    return OutcomeKind.ALREADY_FAILED if outcome.remembered else OutcomeKind.FAILED


class FinalOutcome(StrEnum):
    """How a followed rebalance ended, as far as the function could tell."""

    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"  # not final within FOLLOW_MAX_SECONDS, or it could not be followed


@dataclass(frozen=True)
class FollowUp:
    """A rebalance to look at again (a follow-up message's body): the n-th look."""

    portfolio_id: str
    rebalance_id: str
    skip_schedule_validation: bool
    delivery_key: str | None  # the delivery that triggered it
    triggered_at: float  # epoch seconds
    number: int = 1
    # The API the rebalance was started on (RebalancingApi.version); None in follow-ups written
    # before it was recorded (followed through the API of the day).
    api_version: str | None = None


@dataclass(frozen=True)
class RebalanceState:
    """One rebalance as the API shows it; `final` None while it is not over."""

    status: str | None
    final: FinalOutcome | None
    transaction_hash: str | None = None
    block_number: int | None = None
    gas_used: str | None = None
    started_at: float | None = None  # epoch seconds
    closed_at: float | None = None
    error: str | None = None
    # Not final: the rebalance waits for a person to act (v2's awaiting_user).
    awaiting_user: bool = False


AttributeValue = str | int | float


@dataclass(frozen=True)
class Message:
    """An input carried by a message that its queue delivers again unless it is settled. What
    its earlier receives may have started is the guard's record, never inferred from these."""

    message_id: str
    body: str
    receive_count: int = 1  # this is the n-th receive


@dataclass(frozen=True)
class OutgoingMessage:
    """A message for a queue: a body that is a valid input of this function, attributes that
    say why it was written, and a delay before it becomes visible (0 to the queue's limit)."""

    body: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    delay_seconds: int = 0


class ApiKey:
    """A secret string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(<redacted>)"

    __str__ = __repr__
