"""Client-side pacing shared by every worker of an execution environment.

Two brakes, so a deployment slows down before Glider answers 429:
- a token bucket at RATE_LIMIT_PER_SECOND (unset: no limit), burst of one second's worth;
- back-pressure from Glider's own headers: when X-RateLimit-Remaining reaches zero, no request
  starts before X-RateLimit-Reset (Unix seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

# Never sleep longer than this for a Reset header: a wrong clock or value must not stall us.
MAX_RESET_WAIT_SECONDS = 30.0


class RateLimiter:
    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = per_second
        self._capacity = max(1.0, per_second or 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0  # on the monotonic clock
        self._lock = threading.Lock()

    def acquire(self, *, budget_seconds: float = float("inf")) -> bool:
        """Wait for permission to send one request; False if that would take longer than
        `budget_seconds` (the caller then does not send)."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            if self._rate:
                self._refill(now, self._rate)
                # Reserve a token now (possibly going negative): later callers queue behind.
                wait = max(wait, (1.0 - self._tokens) / self._rate)
            if wait > budget_seconds:
                return False
            if self._rate:
                self._tokens -= 1.0
        if wait > 0:
            self._sleep(wait)
        return True

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read Glider's X-RateLimit-Remaining / X-RateLimit-Reset (header names lower-case)."""
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        if remaining is None or reset is None:
            return
        try:
            exhausted = int(remaining) <= 0
            reset_in = float(reset) - self._wall_clock()
        except ValueError:
            return
        if exhausted and reset_in > 0:
            with self._lock:
                until = self._clock() + min(reset_in, MAX_RESET_WAIT_SECONDS)
                self._paused_until = max(self._paused_until, until)

    def _refill(self, now: float, rate: float) -> None:
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * rate)
        self._updated = now
