"""The shared client-side pacing: a token bucket and Glider's X-RateLimit headers."""

from __future__ import annotations

from glider_trigger.outbound.glider.pacing import MAX_RESET_WAIT_SECONDS, RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: float | None, time: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=time.clock, wall_clock=time.clock, sleep=time.sleep)


def test_without_a_rate_nothing_waits() -> None:
    time = FakeTime()
    pacing = limiter(None, time)

    for _ in range(1_000):
        assert pacing.acquire()

    assert time.slept == []


def test_the_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    time = FakeTime()
    pacing = limiter(5, time)

    for _ in range(25):
        pacing.acquire()

    # 5 at once (the burst), then 20 more at 5 per second: 4 seconds in all.
    assert abs((time.now - 1_000.0) - 4.0) < 1e-9
    assert all(abs(wait - 0.2) < 1e-9 for wait in time.slept)


def test_a_request_that_would_wait_past_its_budget_is_not_sent() -> None:
    time = FakeTime()
    pacing = limiter(1, time)
    pacing.acquire()

    assert pacing.acquire(budget_seconds=0.5) is False
    assert time.slept == []
    assert pacing.acquire(budget_seconds=2) is True


def test_an_exhausted_remaining_pauses_until_the_reset() -> None:
    time = FakeTime()
    pacing = limiter(None, time)

    pacing.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(time.now + 3)})
    pacing.acquire()

    assert time.slept == [3.0]


def test_remaining_above_zero_or_a_reset_in_the_past_does_not_pause() -> None:
    time = FakeTime()
    pacing = limiter(None, time)

    pacing.observe({"x-ratelimit-remaining": "7", "x-ratelimit-reset": str(time.now + 3)})
    pacing.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(time.now - 3)})
    pacing.observe({"x-ratelimit-remaining": "zero", "x-ratelimit-reset": "soon"})
    pacing.acquire()

    assert time.slept == []


def test_an_absurd_reset_is_capped() -> None:
    time = FakeTime()
    pacing = limiter(None, time)

    pacing.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(time.now + 86_400)})
    pacing.acquire()

    assert time.slept == [MAX_RESET_WAIT_SECONDS]
