"""Domain exceptions and the single place that classifies them.

Every failure the function can meet is one of these exceptions; `classify` decides whether it
is worth retrying (transient), will never succeed as sent (permanent), or means every other
call will fail the same way (systemic: a revoked key, a missing secret, a disabled tenant).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class FailureClass(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEMIC = "systemic"


class ConfigurationError(Exception):
    """An environment variable is missing or invalid; raised once, when the function starts."""


class QueueWriteError(Exception):
    """SQS refused messages even after retries; `unsent` says how many."""

    def __init__(self, message: str, *, unsent: int) -> None:
        super().__init__(message)
        self.unsent = unsent


class DeadLetterWriteError(QueueWriteError):
    """The DLQ refused a message: the invocation must fail so that AWS keeps the event."""


class FanOutError(QueueWriteError):
    """The work queue refused part of a fan-out: the invocation fails so that it is retried
    (what was enqueued already is de-duplicated by its idempotency key)."""


class TriggerError(Exception):
    """Base of every classified failure of one trigger request (or of one whole input)."""

    fixed_reason: ClassVar[str] = "INTERNAL_ERROR"
    # True when Glider answered 2xx: it may have started a rebalance, so the delivery must never
    # send this portfolio again (the guard remembers the outcome like a success).
    settles_delivery: ClassVar[bool] = False

    @property
    def reason(self) -> str:
        """A short, stable code for logs, metrics and the DLQ (e.g. RATE_LIMITED)."""
        return self.fixed_reason


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


class GliderTransportError(TriggerError):
    """No HTTP response: timeout, refused or reset connection, TLS failure.

    `maybe_delivered` is True when the request had left: Glider may have triggered the
    rebalance even though we never saw its answer (it has no idempotency key).
    """

    def __init__(self, message: str, *, timed_out: bool, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.maybe_delivered = maybe_delivered

    @property
    def reason(self) -> str:
        return "TIMEOUT" if self.timed_out else "CONNECTION_ERROR"


class GliderApiError(TriggerError):
    """Glider answered, but not with success. Carries what support asks for."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.retry_after_seconds = retry_after_seconds

    @property
    def reason(self) -> str:
        if self.is_rate_limited:
            return "RATE_LIMITED"
        if self.code in _TENANT_CODES:
            return "TENANT_UNAVAILABLE"
        if self.status >= 500:
            return "SERVER_ERROR"
        if 300 <= self.status < 400:
            return "UNEXPECTED_REDIRECT"  # never followed: the key must not travel elsewhere
        return _REASON_BY_STATUS.get(self.status, "CLIENT_ERROR")

    @property
    def is_rate_limited(self) -> bool:
        return self.status == 429 or self.code == "API_004"

    @property
    def is_unauthorized(self) -> bool:
        """The key was refused: it may have been rotated, so it is worth one refetch."""
        return self.status == 401 or self.code in _UNAUTHORIZED_CODES


class UnexpectedResponseError(GliderApiError):
    """A 2xx that is not a success body. The API may have acted on it, so it is never retried."""

    settles_delivery = True

    @property
    def reason(self) -> str:
        return "UNEXPECTED_RESPONSE"


class RememberedFailureError(TriggerError):
    """An earlier delivery's failure that settled it (Glider answered 2xx, not a success), as
    the guard stored it: never sent again, and its dead letter is written once per delivery."""

    settles_delivery = True

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


_UNAUTHORIZED_CODES = frozenset({"API_100", "API_101", "API_102", "API_103"})
_FORBIDDEN_CODES = frozenset({"API_104", "API_110"})
_TENANT_CODES = frozenset({"API_105", "API_106"})
_SYSTEMIC_CODES = _UNAUTHORIZED_CODES | _FORBIDDEN_CODES | _TENANT_CODES
_REASON_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    422: "BAD_REQUEST",
}


def classify(error: TriggerError) -> FailureClass:
    """The one place that decides what a failure means for retries and the DLQ.

    Transport errors, a deadline too close, an open circuit, a duplicate in progress, an
    unavailable idempotency store, and anything unforeseen are transient: the work is kept
    (retried, then dead-lettered), never dropped.
    """
    if error.settles_delivery:
        return FailureClass.PERMANENT  # Glider answered 2xx and may have acted: never retried
    if isinstance(error, GliderApiError):
        return _classify_api_error(error)
    if isinstance(error, SecretUnavailableError):
        return FailureClass.TRANSIENT if error.retryable else FailureClass.SYSTEMIC
    if isinstance(error, SystemicHaltError):
        return FailureClass.SYSTEMIC
    if isinstance(error, InvalidInputError | InvalidPortfolioIdError):
        return FailureClass.PERMANENT
    return FailureClass.TRANSIENT


def _classify_api_error(error: GliderApiError) -> FailureClass:
    if error.code in _SYSTEMIC_CODES or error.status in (401, 403):
        return FailureClass.SYSTEMIC
    if error.is_rate_limited or error.status >= 500 or error.code == "API_000":
        return FailureClass.TRANSIENT
    # 408 Request Timeout is the server giving up on us: as transient as a socket timeout.
    if error.status == 408:
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT
