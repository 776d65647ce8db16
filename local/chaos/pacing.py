"""The pacing check: every request the function made to Glider, against its rate ceiling.

What is checked, exactly. RATE_LIMIT_PER_SECOND (`rate`) holds per execution environment: each
has one token bucket (outbound/glider/pacing.py) of `max(1, rate)` tokens (one second's worth),
full when the environment starts, refilled at `rate` a second, and every request to Glider takes
a token first (triggers, reconcile lookups, follow-up status calls). The emulator records each
request's arrival; each arrival is given to the environment that was taking invocations then
(harness.Stack.environment_started: one invocation runs at a time). Per environment, the arrivals
are replayed through the same bucket, enlarged by `allowance` seconds of refill: a slot is taken
a moment before the request arrives (the guard's write before a first attempt, a connection, a
busy machine), so arrivals may bunch by that much more than slots. An arrival that finds less
than one token is a request over the ceiling (it takes none). Equivalently: in no span of
arrivals [t1, t2] of one environment are there more than `max(1, rate) + rate * (t2 - t1 +
allowance)` requests. The other client's requests (phase.EXTERNAL_AGENT) are not the function's
and are left out; every other request the emulator saw is counted, answered or not.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

# Float noise in the refill: a token this close to whole is whole.
_EPSILON = 1e-9


@dataclass(frozen=True)
class PacingCheck:
    rate: float  # requests a second, per execution environment
    capacity: float  # the bucket's tokens with the allowance
    allowance_seconds: float
    environments: int
    requests: int  # the function's requests to Glider, checked
    over: int  # ... arriving over the ceiling
    peak_per_second: int  # the most arrivals of one environment within one second
    # The allowance these arrivals needed to be all within the ceiling: how close they came.
    needed_allowance_seconds: float = 0.0
    over_at: list[float] = field(default_factory=list)  # the first few, time.time()


def check_pacing(
    arrivals: Sequence[float],
    environment_started: Sequence[float],
    *,
    rate: float,
    allowance_seconds: float,
) -> PacingCheck:
    """`arrivals` (time.time()) split by the environments' start times, each checked alone."""
    capacity = max(1.0, rate) + rate * allowance_seconds
    starts = sorted(environment_started) or [min(arrivals, default=0.0)]
    spans: list[list[float]] = [[] for _ in starts]
    for arrived in sorted(arrivals):
        spans[max(0, bisect_right(starts, arrived) - 1)].append(arrived)
    over_at: list[float] = []
    peak = 0
    excess = 0.0  # the most requests of one environment in a span beyond max(1, rate) + rate*span
    for start, times in zip(starts, spans, strict=True):
        excess = max(excess, _excess(times, rate) - max(1.0, rate))
        tokens, last = capacity, start
        for arrived in times:
            tokens = min(capacity, tokens + max(0.0, arrived - last) * rate)
            last = max(last, arrived)
            if tokens >= 1.0 - _EPSILON:
                tokens -= 1.0
            else:
                over_at.append(arrived)
        peak = max(peak, _peak(times, 1.0))
    return PacingCheck(
        rate=rate,
        capacity=round(capacity, 3),
        allowance_seconds=allowance_seconds,
        environments=len(starts),
        requests=len(arrivals),
        over=len(over_at),
        peak_per_second=peak,
        needed_allowance_seconds=round(max(0.0, excess) / rate, 3),
        over_at=over_at[:20],
    )


def _excess(times: list[float], rate: float) -> float:
    """The most (sorted) arrivals in one span [t_i, t_j] less `rate * (t_j - t_i)`: with
    a_k = k - rate * t_k, a span holds (a_j - a_i) + 1 of that, maximal over i <= j."""
    best, lowest = 0.0, float("inf")
    for index, arrived in enumerate(times):
        level = index - rate * arrived
        lowest = min(lowest, level)
        best = max(best, level - lowest + 1)
    return best


def _peak(times: list[float], width: float) -> int:
    """The most of the (sorted) times within any span of `width` seconds."""
    best = first = 0
    for last, arrived in enumerate(times):
        while arrived - times[first] > width:
            first += 1
        best = max(best, last - first + 1)
    return best
