"""RetryPolicy and RebalanceTrigger: backoff, Retry-After, key refresh, the deadline."""

from __future__ import annotations

import random

import pytest

from glider_trigger.domain.errors import (
    ApiError,
    Certainty,
    FailureClass,
    NotAttemptedError,
    SecretUnavailableError,
    TriggerError,
)
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    ApiKey,
    Failed,
    InputSource,
    Outcome,
    Receipt,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.domain.retry import RetryPolicy
from glider_trigger.outbound.glider.http import unreachable
from glider_trigger.outbound.glider.shared import api_error, unexpected_2xx
from tests.fakes.api import (
    WORST_CASE,
    FakeApi,
    FakeDeadline,
    FakeKeys,
    rebalance_trigger,
    retry_policy,
)
from tests.fakes.clock import FakeClock
from tests.fakes.guard import RecordedAttempts

REQUEST = TriggerRequest("port_abc123", True, InputSource(SourceKind.DIRECT))
RECEIPT = Receipt("rebal_def456", "sched_abc123", "req_xyz789", "corr_abc123")


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible jitter, not cryptography


def server_error(request_id: str | None = None) -> ApiError:
    return api_error("HTTP 503 from Glider", status=503, request_id=request_id)


def timeout() -> ApiError:
    return unreachable("read timeout", timed_out=True, certainty=Certainty.LOST)


def unauthorized() -> ApiError:
    return api_error("Invalid API key", status=401, code="API_102")


def not_found() -> ApiError:
    return api_error("Portfolio not found", status=404, code="API_200")


class CeilingRandom(random.Random):
    """Always draws the top of the range: the longest backoff full jitter allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def run(
    api: FakeApi,
    *,
    keys: FakeKeys | None = None,
    deadline: FakeDeadline | None = None,
    policy: RetryPolicy | None = None,
    rng: random.Random | None = None,
) -> tuple[Outcome, FakeClock, FakeKeys]:
    keys = keys or FakeKeys()
    deadline = deadline or FakeDeadline()
    sleep = FakeClock(monotonic=1000.0, deadline=deadline)
    policy = policy or retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)
    service = rebalance_trigger(api, keys, policy, clock=sleep, rng=rng or seeded(7))
    return service.trigger(REQUEST, Invocation(deadline, policy), RecordedAttempts()), sleep, keys


# --- RetryPolicy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (10, 8.0)],
)
def test_backoff_is_full_jitter_under_the_capped_exponential(
    retry_number: int, ceiling: float
) -> None:
    policy = retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)
    rng = seeded(1234)

    draws = [policy.backoff_seconds(retry_number, rng) for _ in range(2000)]

    assert all(0 <= d <= ceiling for d in draws)
    assert len(set(draws)) > 1000  # jittered, not a constant
    assert max(draws) > ceiling * 0.9  # spans the range, not a fraction of it
    assert min(draws) < ceiling * 0.1


def test_backoff_with_zero_base_never_waits() -> None:
    policy = retry_policy(base_delay_seconds=0, max_delay_seconds=8.0)

    assert {policy.backoff_seconds(n, seeded(n)) for n in range(1, 6)} == {0.0}


@pytest.mark.parametrize("retry_after", [0.0, 1.0, 5.0, 8.0])
def test_delay_honours_retry_after(retry_after: float) -> None:
    policy = retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)
    error = api_error("slow down", status=429, retry_after_seconds=retry_after)
    rng = seeded(99)

    for retry_number in range(1, 5):
        delay = policy.delay_before_retry(error, retry_number, rng)
        assert delay is not None
        assert retry_after <= delay <= retry_after + 0.1 * 8.0


@pytest.mark.parametrize("retry_after", [8.01, 30.0, 3600.0])
def test_retry_after_beyond_max_delay_means_do_not_retry_now(retry_after: float) -> None:
    policy = retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)
    error = api_error("slow down", status=429, retry_after_seconds=retry_after)

    assert policy.delay_before_retry(error, 1, seeded(1)) is None


def test_delay_without_retry_after_is_the_backoff() -> None:
    policy = retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)

    delays = [policy.delay_before_retry(timeout(), 3, seeded(s)) for s in range(200)]

    assert all(d is not None and 0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 100


# --- RebalanceTrigger ----------------------------------------------------------------------


def test_success_on_the_first_attempt() -> None:
    api = FakeApi(RECEIPT)

    outcome, sleep, keys = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt == RECEIPT
    assert outcome.attempts == 1
    assert outcome.request == REQUEST
    assert [(pid, skip, key.reveal()) for pid, skip, key in api.calls] == [
        ("port_abc123", True, "key-1")
    ]
    assert sleep.delays == []
    assert keys.refreshes == [False]
    assert len(outcome.api_latencies_ms) == 1


@pytest.mark.parametrize("error", [timeout(), server_error(), api_error("x", status=429)])
def test_transient_error_then_success(error: TriggerError) -> None:
    api = FakeApi(error, RECEIPT)

    outcome, sleep, _ = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.attempts == 2
    assert len(sleep.delays) == 1
    assert 0 <= sleep.delays[0] <= 0.5  # first retry: full jitter under base delay
    assert len(api.calls) == 2
    assert len(outcome.api_latencies_ms) == 2


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [server_error(), timeout(), server_error(request_id="req_last")]
    api = FakeApi(*errors)

    outcome, sleep, _ = run(api, policy=retry_policy(max_attempts=3))

    assert isinstance(outcome, Failed)
    assert outcome.attempts == 3
    assert outcome.error is errors[-1]
    assert outcome.failure_class is FailureClass.TRANSIENT
    assert len(sleep.delays) == 2
    assert len(api.calls) == 3
    assert len(outcome.api_latencies_ms) == 3


def test_max_attempts_one_means_no_retry() -> None:
    api = FakeApi(server_error())

    outcome, sleep, _ = run(api, policy=retry_policy(max_attempts=1))

    assert isinstance(outcome, Failed)
    assert outcome.attempts == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    "error",
    [
        not_found(),
        api_error("no schedule", status=400, code="API_002"),
        api_error("Unprocessable", status=422),
        unexpected_2xx(200),
    ],
)
def test_permanent_error_is_not_retried(error: ApiError) -> None:
    api = FakeApi(error)

    outcome, sleep, keys = run(api)

    assert isinstance(outcome, Failed)
    assert outcome.error is error
    assert outcome.failure_class is FailureClass.PERMANENT
    assert outcome.attempts == 1
    assert sleep.delays == []
    assert keys.refreshes == [False]


def test_systemic_forbidden_is_not_retried_and_key_not_refreshed() -> None:
    error = api_error("Permission denied", status=403, code="API_104")
    api = FakeApi(error)

    outcome, sleep, keys = run(api)

    assert isinstance(outcome, Failed)
    assert outcome.failure_class is FailureClass.SYSTEMIC
    assert outcome.attempts == 1
    assert keys.refreshes == [False]
    assert sleep.delays == []


def test_unauthorized_refetches_the_key_once_then_succeeds() -> None:
    api = FakeApi(unauthorized(), RECEIPT)

    outcome, sleep, keys = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.attempts == 2
    assert keys.refreshes == [False, True]
    assert [call[2].reveal() for call in api.calls] == ["key-1", "key-2"]
    assert sleep.delays == []


def test_unauthorized_twice_is_systemic_after_two_attempts() -> None:
    second = unauthorized()
    api = FakeApi(unauthorized(), second)

    outcome, _, keys = run(api)

    assert isinstance(outcome, Failed)
    assert outcome.failure_class is FailureClass.SYSTEMIC
    assert outcome.attempts == 2
    assert outcome.error is second
    assert keys.refreshes == [False, True]


def test_retry_after_longer_than_max_delay_stops_without_sleeping() -> None:
    error = api_error("Rate limit exceeded", status=429, code="API_004", retry_after_seconds=30.0)
    api = FakeApi(error)

    outcome, sleep, _ = run(
        api, policy=retry_policy(max_attempts=4, base_delay_seconds=0.5, max_delay_seconds=8.0)
    )

    assert isinstance(outcome, Failed)
    assert outcome.attempts == 1
    assert sleep.delays == []
    assert outcome.failure_class is FailureClass.TRANSIENT
    assert isinstance(outcome.error, ApiError)
    assert outcome.error.retry_after_seconds == 30.0
    assert outcome.error.reason == "RATE_LIMITED"


def test_retry_after_within_max_delay_is_waited_for() -> None:
    api = FakeApi(api_error("slow down", status=429, retry_after_seconds=5.0), RECEIPT)

    outcome, sleep, _ = run(api)

    assert isinstance(outcome, Triggered)
    assert len(sleep.delays) == 1
    assert sleep.delays[0] >= 5.0


def test_too_little_time_before_the_first_attempt_never_calls_the_api() -> None:
    api = FakeApi(RECEIPT)
    keys = FakeKeys()

    outcome, sleep, _ = run(api, keys=keys, deadline=FakeDeadline(WORST_CASE - 0.5))

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, NotAttemptedError)
    assert outcome.error.reason == "DEADLINE_EXCEEDED"
    assert outcome.failure_class is FailureClass.TRANSIENT
    assert outcome.attempts == 0
    assert api.calls == []
    assert keys.refreshes == []
    assert sleep.delays == []


def test_exactly_the_worst_case_left_is_enough_for_an_attempt() -> None:
    outcome, _, _ = run(FakeApi(RECEIPT), deadline=FakeDeadline(WORST_CASE))

    assert isinstance(outcome, Triggered)


def test_too_little_time_for_the_next_backoff_stops_with_the_last_real_error() -> None:
    error = server_error(request_id="req_1")
    api = FakeApi(error, RECEIPT)
    # Time for one attempt and a 0.2 s wait; the ceiling draw of the first backoff is 0.5 s.
    deadline = FakeDeadline(WORST_CASE + 0.2)

    outcome, sleep, _ = run(api, deadline=deadline, rng=CeilingRandom())

    assert isinstance(outcome, Failed)
    assert outcome.error is error
    assert outcome.attempts == 1
    assert sleep.delays == []
    assert len(api.calls) == 1


def test_deadline_running_out_between_retries_keeps_the_last_real_error() -> None:
    errors: list[Receipt | TriggerError] = [timeout(), server_error(request_id="req_2"), RECEIPT]
    api = FakeApi(*errors)
    # The fake sleep takes the waited time off the deadline: 0.5 s + 1.0 s of backoff.
    deadline = FakeDeadline(WORST_CASE + 1.2)

    outcome, sleep, _ = run(api, deadline=deadline, rng=CeilingRandom())

    assert isinstance(outcome, Failed)
    assert outcome.error is errors[1]
    assert outcome.attempts == 2
    assert sleep.delays == [0.5]


def test_an_unreadable_secret_is_systemic_and_never_calls_the_api() -> None:
    error = SecretUnavailableError("cannot read the secret", retryable=False)
    api = FakeApi(RECEIPT)

    outcome, sleep, keys = run(api, keys=FakeKeys(error))

    assert isinstance(outcome, Failed)
    assert outcome.error is error
    assert outcome.failure_class is FailureClass.SYSTEMIC
    assert outcome.attempts == 0
    assert api.calls == []
    assert sleep.delays == []
    assert len(keys.refreshes) == 1


def test_a_throttled_secret_is_retried_with_backoff_then_reported_transient() -> None:
    error = SecretUnavailableError("Secrets Manager throttled", retryable=True)
    api = FakeApi(RECEIPT)

    outcome, sleep, keys = run(api, keys=FakeKeys(error))

    assert isinstance(outcome, Failed)
    assert outcome.failure_class is FailureClass.TRANSIENT
    assert outcome.attempts == 0  # the API was never called
    assert api.calls == []
    assert len(keys.refreshes) == 4  # the attempt budget
    assert len(sleep.delays) == 3


def test_secret_unavailable_on_refresh_after_401_is_reported() -> None:
    class FailsOnRefresh(FakeKeys):
        def get(self, *, refresh: bool = False) -> ApiKey:
            if refresh:
                self.refreshes.append(refresh)
                raise SecretUnavailableError("secret deleted", retryable=False)
            return super().get(refresh=refresh)

    api = FakeApi(unauthorized(), RECEIPT)

    outcome, _, keys = run(api, keys=FailsOnRefresh())

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, SecretUnavailableError)
    assert outcome.attempts == 1
    assert len(api.calls) == 1
    assert keys.refreshes == [False, True]


def invocation(threshold: int = 3) -> Invocation:
    # 2 attempts a portfolio, for the breaker and the trigger alike.
    policy = retry_policy(
        max_attempts=2, base_delay_seconds=0, max_delay_seconds=0, breaker_threshold=threshold
    )
    return Invocation(FakeDeadline(), policy)


def trigger_with(api: FakeApi, state: Invocation) -> Outcome:
    service = rebalance_trigger(
        api,
        FakeKeys(),
        state.policy,
        clock=FakeClock(),
        rng=seeded(1),
    )
    return service.trigger(REQUEST, state, RecordedAttempts())


def test_after_a_systemic_failure_the_rest_of_the_invocation_is_not_attempted() -> None:
    state = invocation()
    refused = api_error("Permission denied", status=403, code="API_104")
    first = trigger_with(FakeApi(refused), state)
    untouched = FakeApi(RECEIPT)

    second = trigger_with(untouched, state)

    assert isinstance(first, Failed)
    assert first.failure_class is FailureClass.SYSTEMIC
    assert isinstance(second, Failed)
    assert second.failure_class is FailureClass.SYSTEMIC
    assert second.error.reason == "FORBIDDEN"
    assert "not attempted" in str(second.error)
    assert untouched.calls == []


def test_the_circuit_opens_after_consecutive_transient_portfolios() -> None:
    state = invocation(threshold=2)
    down = api_error("down", status=503, code="API_000")
    for _ in range(2):
        assert isinstance(trigger_with(FakeApi(down, down), state), Failed)
    untouched = FakeApi(RECEIPT)

    outcome = trigger_with(untouched, state)

    assert isinstance(outcome, Failed)
    assert outcome.error.reason == "CIRCUIT_OPEN"
    assert outcome.failure_class is FailureClass.TRANSIENT
    assert untouched.calls == []


def test_a_success_or_a_permanent_answer_resets_the_circuit() -> None:
    state = invocation(threshold=2)
    down = api_error("down", status=503, code="API_000")
    trigger_with(FakeApi(down, down), state)
    trigger_with(FakeApi(api_error("nope", status=404, code="API_200")), state)
    trigger_with(FakeApi(down, down), state)

    outcome = trigger_with(FakeApi(RECEIPT), state)

    assert isinstance(outcome, Triggered)


def test_threshold_zero_disables_the_circuit() -> None:
    state = invocation(threshold=0)
    down = api_error("down", status=503, code="API_000")
    for _ in range(5):
        trigger_with(FakeApi(down, down), state)

    assert isinstance(trigger_with(FakeApi(RECEIPT), state), Triggered)
