"""Domain exceptions and the single place that classifies them.

Every failure the function can meet is one of these exceptions; `classify` decides whether it
is worth retrying (transient), will never succeed as sent (permanent), or means every other
call will fail the same way (systemic: a revoked key, a missing secret, a disabled tenant).
An API's answers arrive already classified by its adapter (ApiError): the status and code
tables of an API version live with that version's adapter, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class FailureClass(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEMIC = "systemic"


class ConfigurationError(Exception):
    """An environment variable is missing or invalid; raised once, when the function starts."""


class QueueWriteError(Exception):
    """A queue refused messages even after retries; `unsent` says how many."""

    def __init__(self, message: str, *, unsent: int) -> None:
        super().__init__(message)
        self.unsent = unsent


class DeadLetterWriteError(QueueWriteError):
    """The DLQ refused a message: what was to be lettered stays where it was (the message, or
    the event that Lambda retries)."""


class FanOutError(QueueWriteError):
    """The work queue refused messages (an event's queued portfolios, a split, a deferral): the
    input is delivered again (what was queued already is de-duplicated by its delivery key)."""


class FollowUpError(QueueWriteError):
    """The follow-up queue refused messages: those rebalances cannot be followed."""


class OnceInProgressError(Exception):
    """Another invocation is doing what `once` guards right now: the caller's delivery is left
    to come back (it then finds it done, or does it)."""


class OutcomeEventError(Exception):
    """The event bus refused an outcome's event: the follow-up is delivered again."""


class TriggerError(Exception):
    """Base of every classified failure of one trigger request (or of one whole input)."""

    fixed_reason: ClassVar[str] = "INTERNAL_ERROR"

    @property
    def reason(self) -> str:
        """A short, stable code for logs, metrics and the DLQ (e.g. RATE_LIMITED)."""
        return self.fixed_reason

    @property
    def settles_delivery(self) -> bool:
        """True when the API may have started a rebalance on it (it answered 2xx): the delivery
        never sends this portfolio again, and the guard remembers the outcome like a success."""
        return False

    @property
    def retry_after_seconds(self) -> float | None:
        """How long the API asked us to wait before trying again, if it said."""
        return None


class InvalidInputError(TriggerError):
    """The input is not one of the supported shapes; it is dead-lettered verbatim."""

    fixed_reason = "MALFORMED_INPUT"


class InvalidPortfolioIdError(TriggerError):
    """A portfolio id outside the conservative pattern; it never reaches the API."""

    fixed_reason = "INVALID_PORTFOLIO_ID"


class NotAttemptedError(TriggerError):
    """The invocation had too little time left to start (another) attempt."""

    fixed_reason = "DEADLINE_EXCEEDED"


class CircuitOpenError(TriggerError):
    """Several portfolios in a row failed transiently: the API looks down, so the rest of the
    invocation does not spend its time on full retry cycles."""

    fixed_reason = "CIRCUIT_OPEN"


class SystemicHaltError(TriggerError):
    """Not attempted: an earlier call of this invocation failed in a way every call would."""

    def __init__(self, cause: TriggerError) -> None:
        super().__init__(f"not attempted after a systemic failure: {cause.reason}: {cause}")
        self.cause = cause

    @property
    def reason(self) -> str:
        return self.cause.reason


class DuplicateInProgressError(TriggerError):
    """Another invocation is triggering this same delivery right now."""

    fixed_reason = "DUPLICATE_IN_PROGRESS"


class IdempotencyUnavailableError(TriggerError):
    """The de-duplication store cannot be read or written: not triggering is the safe choice."""

    fixed_reason = "IDEMPOTENCY_STORE_UNAVAILABLE"


class SecretUnavailableError(TriggerError):
    """The API key could not be read; `retryable` tells a throttle from a misconfiguration."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

    @property
    def reason(self) -> str:
        return "SECRET_THROTTLED" if self.retryable else "SECRET_UNAVAILABLE"


@dataclass(frozen=True)
class ApiFacts:
    """What support asks for about one answer of the API (None where it gave none)."""

    http_status: int | None = None
    code: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None


class Certainty(StrEnum):
    """What an API's answer (or its absence) proves about whether Glider acted on the request:
    the one fact the domain needs to decide between sending again, looking first, and never
    sending again. One value per case instead of flags, so that no combination of flags can
    claim two things at once (answered and unanswered, refused and settled)."""

    # The request never left (refused or timed-out connection): Glider cannot have acted.
    NOT_SENT = "not_sent"
    # Glider answered, and the answer proves it started nothing (a 4xx, a 429; any answer to a
    # read, which starts nothing whatever it says).
    REFUSED = "refused"
    # The request left and no answer came (a read timeout, a reset): Glider may have acted.
    LOST = "lost"
    # An answer that proves no refusal (a 5xx): Glider may have started the rebalance and
    # failed afterwards.
    UNPROVEN = "unproven"
    # A 2xx that is not a success: Glider may well have acted, so the delivery is settled and
    # never sent again (looking would not make sending again safe).
    ACTED_UNREADABLE = "acted_unreadable"

    @property
    def answered(self) -> bool:
        """The API gave an HTTP answer (a 404, say): it is up, whatever the answer."""
        return self in (Certainty.REFUSED, Certainty.UNPROVEN, Certainty.ACTED_UNREADABLE)

    @property
    def may_have_acted(self) -> bool:
        """The API may have started a rebalance on this attempt: look before sending again."""
        return self in (Certainty.LOST, Certainty.UNPROVEN)

    @property
    def settles(self) -> bool:
        """Never sent again: the guard remembers the outcome like a success."""
        return self is Certainty.ACTED_UNREADABLE


class ApiError(TriggerError):
    """A trigger the API did not accept, or whose answer never arrived, as its adapter read
    it: the adapter decides the reason, the class and the certainty (what the answer proves
    about whether Glider acted); the domain only acts on them."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        failure_class: FailureClass,
        certainty: Certainty,
        facts: ApiFacts | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self._reason = reason
        self.failure_class = failure_class
        self.certainty = certainty
        self.facts = facts or ApiFacts()
        self._retry_after_seconds = retry_after_seconds

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def settles_delivery(self) -> bool:
        return self.certainty.settles

    @property
    def retry_after_seconds(self) -> float | None:
        return self._retry_after_seconds


class KeyRefusedError(ApiError):
    """The API refused the key (a 401, or a key or token code whatever the status): it may
    have been rotated since it was cached, so it is worth one refetch before the failure counts.

    A kind of error rather than a Certainty: it says what to do about the key, not whether
    Glider acted, and the two are independent (a 5xx carrying a key code is UNPROVEN and a
    refused key at once). Nor is it read from the reason: the adapter's reason follows its own
    precedence (a 401 with a scope code reads FORBIDDEN, a 429 with a key code RATE_LIMITED),
    and both of those are refused keys too."""


class FanOutRefusedError(TriggerError):
    """The work queue refused a message's fan-out on its last receive: its ids are
    dead-lettered under its delivery's key instead (never sent)."""

    fixed_reason = "FAN_OUT_FAILED"


class ListCutOffError(TriggerError):
    """The API's list of recent rebalances does not reach back to a lost answer's attempt: it
    cannot tell whether that attempt started one (never read as "nothing started")."""

    fixed_reason = "RECENT_LIST_CUT_OFF"


class RebalanceFailedError(TriggerError):
    """A followed rebalance that Glider reports failed: dead-lettered for an operator to decide
    whether to trigger it again (never retried by the function: funds are at stake)."""

    fixed_reason = "REBALANCE_FAILED"


class RememberedFailureError(TriggerError):
    """An earlier delivery's failure that settled it (the API answered 2xx, not a success), as
    the guard stored it: never sent again, and its dead letter is written once per delivery."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def settles_delivery(self) -> bool:
        return True


def classify(error: TriggerError) -> FailureClass:
    """The one place that decides what a failure means for retries and the DLQ.

    Transport errors, a deadline too close, an open circuit, a duplicate in progress, an
    unavailable idempotency store, and anything unforeseen are transient: the work is kept
    (retried, then dead-lettered), never dropped.
    """
    if error.settles_delivery:
        return FailureClass.PERMANENT  # the API answered 2xx and may have acted: never retried
    if isinstance(error, ApiError):
        return error.failure_class  # as the API version's adapter read its answer
    if isinstance(error, SecretUnavailableError):
        return FailureClass.TRANSIENT if error.retryable else FailureClass.SYSTEMIC
    if isinstance(error, SystemicHaltError):
        return FailureClass.SYSTEMIC
    if isinstance(error, InvalidInputError | InvalidPortfolioIdError | RebalanceFailedError):
        return FailureClass.PERMANENT
    return FailureClass.TRANSIENT
