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
    """What one invocation has learned so far, shared by all its workers.

    - After a systemic failure (a refused key, a missing secret, a disabled tenant) every other
      call would fail the same way: no further attempt starts.
    - After `breaker_threshold` x `attempts_per_portfolio` calls in a row failed transiently
      (5xx, 429, timeouts, resets) with no answer in between, the API looks down: no further
      attempt starts, and what is left fails fast as retryable. Counting calls, not portfolios,
      gives an outage the same budget whether portfolios run one after another or in parallel.
    """

    deadline: Deadline
    request_id: str = ""
    breaker_threshold: int = 3
    attempts_per_portfolio: int = 4
    # The whole invocation's time at its start: no other invocation of this function can hold
    # a delivery "in progress" for longer than this from now (Lambda's timeout is the same).
    lifetime_seconds: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    halted_by: TriggerError | None = field(default=None, init=False)
    failed_calls_in_a_row: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def age_seconds(self) -> float:
        return time.monotonic() - self.started_at

    def blocker(self) -> TriggerError | None:
        with self._lock:
            if self.halted_by is not None:
                return SystemicHaltError(self.halted_by)
            budget = self.breaker_threshold * self.attempts_per_portfolio
            if self.breaker_threshold and self.failed_calls_in_a_row >= budget:
                return CircuitOpenError(
                    f"not attempted: the last {self.failed_calls_in_a_row} calls failed "
                    "transiently; the API looks unavailable"
                )
            return None

    def call_failed_transiently(self) -> None:
        with self._lock:
            self.failed_calls_in_a_row += 1

    def api_answered(self) -> None:
        """A success or a definite answer (a 404, say): the API is up."""
        with self._lock:
            self.failed_calls_in_a_row = 0

    def halt(self, error: TriggerError) -> None:
        with self._lock:
            self.halted_by = self.halted_by or error


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
        outcome = self._attempt(request, invocation)
        if isinstance(outcome, Failed) and outcome.failure_class is FailureClass.SYSTEMIC:
            invocation.halt(outcome.error)
        return outcome

    def _attempt(self, request: TriggerRequest, invocation: Invocation) -> Outcome:
        deadline = invocation.deadline
        tally = _Tally()
        tries = 0  # calls to the API and retried reads of the key
        key_refreshed = refresh_key = False
        last_error: TriggerError | None = None
        while True:
            # Checked before every attempt, retries included: workers already in their retry
            # cycles stop too once another worker has seen a systemic failure or an outage.
            blocker = invocation.blocker()
            if blocker is not None:
                return tally.failed(request, last_error or blocker)
            if deadline.seconds_left() < self._api.worst_case_seconds:
                late = NotAttemptedError(
                    f"{max(deadline.seconds_left(), 0):.1f}s left in the invocation; an attempt "
                    f"may take {self._api.worst_case_seconds:.1f}s"
                )
                return tally.failed(request, last_error or late)
            tries += 1
            try:
                # A throttled Secrets Manager is retried like a busy API; a missing secret is not.
                api_key = self._api_keys.get(refresh=refresh_key)
            except SecretUnavailableError as exc:
                last_error = exc
            else:
                refresh_key = False
                budget = deadline.seconds_left() - self._api.worst_case_seconds
                if self._pacing is not None and not self._pacing.acquire(budget_seconds=budget):
                    no_slot = NotAttemptedError(
                        "the client-side rate limit has no slot before the invocation's deadline"
                    )
                    return tally.failed(request, last_error or no_slot)
                answer = self._call(request, api_key, invocation, tally)
                if isinstance(answer, Receipt):
                    return tally.triggered(request, answer)
                last_error = answer

            unauthorized = isinstance(last_error, GliderApiError) and last_error.is_unauthorized
            if unauthorized and not key_refreshed:
                # The key may have been rotated since we cached it: read it again, once.
                key_refreshed = refresh_key = True
                continue
            if (
                classify(last_error) is not FailureClass.TRANSIENT
                or tries >= self._policy.max_attempts
            ):
                return tally.failed(request, last_error)
            delay = self._policy.delay_before_retry(last_error, tries, self._rng)
            if delay is None or deadline.seconds_left() < delay + self._api.worst_case_seconds:
                return tally.failed(request, last_error)
            self._sleep(delay)

    def _call(
        self, request: TriggerRequest, api_key: ApiKey, invocation: Invocation, tally: _Tally
    ) -> Receipt | TriggerError:
        """One call to the API, accounted for in the tally and the invocation's breaker."""
        tally.attempts += 1
        started = self._clock()
        try:
            receipt = self._api.trigger(
                request.portfolio_id,
                skip_schedule_validation=request.skip_schedule_validation,
                api_key=api_key,
            )
        except TriggerError as exc:
            tally.latencies_ms.append((self._clock() - started) * 1000)
            if isinstance(exc, GliderTransportError) and exc.maybe_delivered:
                tally.maybe_delivered += 1
            failure_class = classify(exc)
            if failure_class is FailureClass.TRANSIENT:
                invocation.call_failed_transiently()
            elif failure_class is FailureClass.PERMANENT:
                invocation.api_answered()
            return exc
        tally.latencies_ms.append((self._clock() - started) * 1000)
        invocation.api_answered()
        return receipt


@dataclass
class _Tally:
    """What the attempts for one portfolio have cost so far."""

    attempts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    maybe_delivered: int = 0  # attempts whose request left but whose answer was lost

    def triggered(self, request: TriggerRequest, receipt: Receipt) -> Triggered:
        return Triggered(
            request,
            receipt,
            self.attempts,
            tuple(self.latencies_ms),
            maybe_delivered_attempts=self.maybe_delivered,
        )

    def failed(self, request: TriggerRequest, error: TriggerError) -> Failed:
        return Failed(
            request,
            error,
            classify(error),
            self.attempts,
            tuple(self.latencies_ms),
            maybe_delivered_attempts=self.maybe_delivered,
        )
