"""The domain service: trigger one portfolio's rebalance, retrying what is worth retrying.

Knows nothing of Lambda events or HTTP: it gets a request, a deadline, an API and a key source,
and returns an Outcome. Retries use exponential backoff with full jitter, honour Retry-After,
and never start an attempt that could not finish before the deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from glider_trigger.api_key import ApiKey
from glider_trigger.errors import (
    CircuitOpenError,
    FailureClass,
    GliderApiError,
    GliderTransportError,
    NotAttemptedError,
    SecretUnavailableError,
    SystemicHaltError,
    TriggerError,
    classify,
)
from glider_trigger.models import Failed, Outcome, Receipt, Triggered, TriggerRequest
from glider_trigger.rate_limit import RateLimiter


class GliderApi(Protocol):
    worst_case_seconds: float

    def trigger(
        self, portfolio_id: str, *, skip_schedule_validation: bool, api_key: ApiKey
    ) -> Receipt: ...


class ApiKeySource(Protocol):
    def get(self, *, refresh: bool = False) -> ApiKey: ...


class Deadline(Protocol):
    def seconds_left(self) -> float:
        """Time left for work, safety margin already taken off."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0

    def backoff_seconds(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(n-1))] for the n-th retry."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry_number - 1))
        return rng.uniform(0, ceiling)

    def delay_before_retry(
        self, error: TriggerError, retry_number: int, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when it should not be retried
        inside this invocation (a Retry-After longer than we are willing to wait)."""
        jitter = self.backoff_seconds(retry_number, rng)
        if isinstance(error, GliderApiError) and error.retry_after_seconds is not None:
            if error.retry_after_seconds > self.max_delay_seconds:
                return None
            return error.retry_after_seconds + jitter * 0.1
        return jitter


@dataclass
class Invocation:
    """What one invocation has learned so far, shared by all its triggers.

    - After a systemic failure (a refused key, a missing secret, a disabled tenant) every other
      call would fail the same way: the rest are not attempted.
    - After `breaker_threshold` portfolios in a row failed transiently after their retries, the
      API looks down: the rest fail fast as retryable instead of each waiting out its retries.
    """

    deadline: Deadline
    request_id: str = ""
    breaker_threshold: int = 3
    halted_by: TriggerError | None = field(default=None, init=False)
    consecutive_transient: int = field(default=0, init=False)
    # Workers of one invocation share this state.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def blocker(self) -> TriggerError | None:
        with self._lock:
            return self._blocker()

    def _blocker(self) -> TriggerError | None:
        if self.halted_by is not None:
            return SystemicHaltError(self.halted_by)
        if self.breaker_threshold and self.consecutive_transient >= self.breaker_threshold:
            return CircuitOpenError(
                f"not attempted: the previous {self.consecutive_transient} portfolios failed "
                "transiently; the API looks unavailable"
            )
        return None

    def observe(self, outcome: Outcome) -> None:
        with self._lock:
            self._observe(outcome)

    def _observe(self, outcome: Outcome) -> None:
        if isinstance(outcome, Triggered):
            self.consecutive_transient = 0
        elif outcome.failure_class is FailureClass.SYSTEMIC:
            self.halted_by = self.halted_by or outcome.error
        elif outcome.failure_class is FailureClass.TRANSIENT and outcome.attempts:
            self.consecutive_transient += 1
        elif outcome.failure_class is FailureClass.PERMANENT and outcome.attempts:
            self.consecutive_transient = 0  # the API answered: it is up


class RebalanceTrigger:
    def __init__(
        self,
        api: GliderApi,
        api_keys: ApiKeySource,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pacing: RateLimiter | None = None,
    ) -> None:
        self._pacing = pacing
        self._api = api
        self._api_keys = api_keys
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        # Jitter spreads retries out; it protects nothing, so a CSPRNG would add nothing.
        self._rng = rng or random.Random()  # noqa: S311  # nosec B311

    def trigger(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        blocker = invocation.blocker()
        if blocker is not None:
            return _failed(request, blocker, 0, [])
        outcome = self._attempt(request, invocation.deadline)
        invocation.observe(outcome)
        return outcome

    def _attempt(self, request: TriggerRequest, deadline: Deadline) -> Outcome:
        attempts = 0  # calls to the API
        tries = 0  # calls to the API and retried reads of the key
        key_refreshed = refresh_key = False
        latencies_ms: list[float] = []
        maybe_delivered = 0
        last_error: TriggerError | None = None
        while True:
            if deadline.seconds_left() < self._api.worst_case_seconds:
                last_error = last_error or NotAttemptedError(
                    f"{max(deadline.seconds_left(), 0):.1f}s left in the invocation; an attempt "
                    f"may take {self._api.worst_case_seconds:.1f}s"
                )
                return _failed(request, last_error, attempts, latencies_ms, maybe_delivered)
            tries += 1
            try:
                api_key = self._api_keys.get(refresh=refresh_key)
            except SecretUnavailableError as exc:
                # A throttled Secrets Manager is retried like a busy API; a missing secret is not.
                last_error = exc
            else:
                refresh_key = False
                budget = deadline.seconds_left() - self._api.worst_case_seconds
                if self._pacing is not None and not self._pacing.acquire(budget_seconds=budget):
                    last_error = last_error or NotAttemptedError(
                        "the client-side rate limit has no slot before the invocation's deadline"
                    )
                    return _failed(request, last_error, attempts, latencies_ms, maybe_delivered)
                attempts += 1
                started = self._clock()
                try:
                    receipt = self._api.trigger(
                        request.portfolio_id,
                        skip_schedule_validation=request.skip_schedule_validation,
                        api_key=api_key,
                    )
                except TriggerError as exc:
                    latencies_ms.append((self._clock() - started) * 1000)
                    last_error = exc
                    if isinstance(exc, GliderTransportError) and exc.maybe_delivered:
                        maybe_delivered += 1
                else:
                    latencies_ms.append((self._clock() - started) * 1000)
                    return Triggered(
                        request,
                        receipt,
                        attempts,
                        tuple(latencies_ms),
                        maybe_delivered_attempts=maybe_delivered,
                    )

            unauthorized = isinstance(last_error, GliderApiError) and last_error.is_unauthorized
            if unauthorized and not key_refreshed:
                # The key may have been rotated since we cached it: read it again, once.
                key_refreshed = refresh_key = True
                continue
            if (
                classify(last_error) is not FailureClass.TRANSIENT
                or tries >= self._policy.max_attempts
            ):
                return _failed(request, last_error, attempts, latencies_ms, maybe_delivered)
            delay = self._policy.delay_before_retry(last_error, tries, self._rng)
            if delay is None or deadline.seconds_left() < delay + self._api.worst_case_seconds:
                return _failed(request, last_error, attempts, latencies_ms, maybe_delivered)
            self._sleep(delay)


def _failed(
    request: TriggerRequest,
    error: TriggerError,
    attempts: int,
    latencies_ms: list[float],
    maybe_delivered: int = 0,
) -> Failed:
    return Failed(
        request,
        error,
        classify(error),
        attempts,
        tuple(latencies_ms),
        maybe_delivered_attempts=maybe_delivered,
    )
