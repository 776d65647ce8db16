"""What one invocation has learned so far, shared by all its workers: its deadline, whether a
systemic failure halted it, and whether the API looks down (the breaker)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from glider_trigger.domain.errors import CircuitOpenError, SystemicHaltError, TriggerError
from glider_trigger.domain.ports import Deadline
from glider_trigger.domain.retry import RetryPolicy


@dataclass
class Invocation:
    """- After a systemic failure (a refused key, a missing secret, a disabled tenant) every
      other call would fail the same way: no further attempt starts.
    - After the policy's breaker budget (breaker_threshold x max_attempts) of calls in a row
      failed transiently (5xx, 429, timeouts, resets) with no answer in between, the API looks
      down: no further attempt starts, and what is left fails fast as retryable. Counting calls,
      not portfolios, gives an outage the same budget whether portfolios run one after another
      or in parallel.
    """

    deadline: Deadline
    policy: RetryPolicy
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
            budget = self.policy.breaker_budget
            if budget and self.failed_calls_in_a_row >= budget:
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
