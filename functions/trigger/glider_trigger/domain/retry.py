"""The retry budget: how often one portfolio is tried, how long between tries, and when the
whole invocation stops trying (the breaker), all from one set of numbers (the settings)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from glider_trigger.domain.errors import TriggerError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int
    base_delay_seconds: float
    max_delay_seconds: float
    # The breaker opens after this many portfolios' worth of attempts failed transiently in a
    # row (0: never); see Invocation.
    breaker_threshold: int

    @property
    def breaker_budget(self) -> int:
        """Calls in a row that may fail transiently before no further attempt starts (0: none)."""
        return self.breaker_threshold * self.max_attempts

    def backoff_seconds(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(n-1))] for the n-th retry."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry_number - 1))
        return rng.uniform(0, ceiling)

    def waits_for(self, retry_after_seconds: float) -> bool:
        """Whether a Retry-After this long is waited out inside the invocation."""
        return retry_after_seconds <= self.max_delay_seconds

    def delay_before_retry(
        self, error: TriggerError, retry_number: int, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when it should not be retried
        inside this invocation (a Retry-After longer than we are willing to wait)."""
        jitter = self.backoff_seconds(retry_number, rng)
        if error.retry_after_seconds is not None:
            if not self.waits_for(error.retry_after_seconds):
                return None
            return error.retry_after_seconds + jitter * 0.1
        return jitter
