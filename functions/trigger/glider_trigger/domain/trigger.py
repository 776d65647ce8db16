"""Trigger one portfolio's rebalance, retrying what is worth retrying.

Knows nothing of Lambda events or HTTP: it gets a request and the invocation (its deadline and
breaker), calls the RebalancingApi port with a key from the ApiKeySource port, and returns an
Outcome. Retries use exponential backoff with full jitter, honour Retry-After, and never start
an attempt that could not finish before the deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from glider_trigger.domain.errors import (
    ApiError,
    FailureClass,
    NotAttemptedError,
    SecretUnavailableError,
    TriggerError,
    classify,
)
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import ApiKey, Failed, Outcome, Receipt, Triggered, TriggerRequest
from glider_trigger.domain.ports import ApiKeySource, Pacing, RebalancingApi
from glider_trigger.domain.retry import RetryPolicy


class RebalanceTrigger:
    def __init__(
        self,
        api: RebalancingApi,
        api_keys: ApiKeySource,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self._pacing = pacing
        self._api = api
        self._api_keys = api_keys
        self.policy = policy
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

            unauthorized = isinstance(last_error, ApiError) and last_error.unauthorized
            if unauthorized and not key_refreshed:
                # The key may have been rotated since we cached it: read it again, once.
                key_refreshed = refresh_key = True
                continue
            if (
                classify(last_error) is not FailureClass.TRANSIENT
                or tries >= self.policy.max_attempts
            ):
                return tally.failed(request, last_error)
            delay = self.policy.delay_before_retry(last_error, tries, self._rng)
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
            receipt = self._api.trigger(request, api_key)
        except TriggerError as exc:
            tally.latencies_ms.append((self._clock() - started) * 1000)
            if isinstance(exc, ApiError) and exc.maybe_delivered:
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
