"""Fakes of the RebalancingApi, ApiKeySource and Deadline ports, and the retry policy of the
default settings (the Clock's fake is in tests/fakes/clock.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from glider_trigger.domain.errors import (
    ApiError,
    Certainty,
    DeadLetterWriteError,
    FailureClass,
    FollowUpError,
    TriggerError,
)
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.models import ApiKey, FollowUp, RebalanceState, Receipt, TriggerRequest
from glider_trigger.domain.ports import (
    FollowReports,
    History,
    OutcomeEvents,
    RecentRebalances,
    ReconcileReports,
    StartedRebalance,
)
from glider_trigger.domain.reconcile import Reconciler
from glider_trigger.domain.retry import RetryPolicy
from glider_trigger.domain.trigger import RebalanceTrigger
from glider_trigger.settings import Settings
from tests.fakes.guard import InMemoryGuard
from tests.fakes.history import RecordingHistory
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

if TYPE_CHECKING:  # tests/fakes/clock.py imports this module
    from tests.fakes.clock import FakeClock

WORST_CASE = 13.0  # connect 3 s + read 10 s


def retry_policy(**overrides: Any) -> RetryPolicy:
    """The settings' defaults, with `overrides`."""
    defaults: dict[str, Any] = {
        "max_attempts": Settings.max_attempts,
        "base_delay_seconds": Settings.retry_base_delay_seconds,
        "max_delay_seconds": Settings.retry_max_delay_seconds,
        "breaker_threshold": Settings.circuit_breaker_threshold,
    }
    return RetryPolicy(**(defaults | overrides))


def refused(
    reason: str,
    failure_class: FailureClass,
    *,
    retry_after_seconds: float | None = None,
    certainty: Certainty = Certainty.REFUSED,
) -> ApiError:
    """An answer the API's adapter read as `reason` and `failure_class` (by default one that
    proves Glider started nothing)."""
    return ApiError(
        f"the API answered {reason}",
        reason=reason,
        failure_class=failure_class,
        certainty=certainty,
        retry_after_seconds=retry_after_seconds,
    )


class FakeApi:
    """Raises or returns the scripted steps in order (then keeps answering the `then` step, if
    given); records every call as (portfolio id, skipScheduleValidation, key)."""

    def __init__(
        self,
        *steps: Receipt | TriggerError,
        worst_case_seconds: float = WORST_CASE,
        then: Receipt | TriggerError | None = None,
    ) -> None:
        self.worst_case_seconds = worst_case_seconds
        self.version = "fake-v1"
        self._steps = list(steps)
        self._then = then
        self.calls: list[tuple[str, bool, ApiKey]] = []
        self.listed = []
        self.list_calls = 0
        self.states = [RebalanceState("running", None)]
        self.state_calls = 0

    listed: list[StartedRebalance]  # what recent_rebalances answers
    list_error: TriggerError | None = None  # raised by recent_rebalances instead, if set

    listed_complete: bool = True  # whether `listed` reaches back to every `since` asked

    def recent_rebalances(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool = False
    ) -> RecentRebalances:
        self.list_calls += 1
        if self.list_error is not None:
            raise self.list_error
        return RecentRebalances(tuple(self.listed), complete=self.listed_complete)

    states: list[RebalanceState | TriggerError]  # what rebalance_state answers, in order

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        self.state_calls += 1
        step = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(step, TriggerError):
            raise step
        return step

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt:
        self.calls.append((request.portfolio_id, request.skip_schedule_validation, api_key))
        if self._steps:
            step = self._steps.pop(0)
        elif self._then is not None:
            step = self._then
        else:
            pytest.fail("the API was called more often than scripted")
        if isinstance(step, TriggerError):
            raise step
        return step


class FakeKeys:
    """Hands out key-1, then key-2 after a refresh; or raises `error`."""

    def __init__(self, error: TriggerError | None = None) -> None:
        self.error = error
        self.refreshes: list[bool] = []
        self._version = 1

    def get(self, *, refresh: bool = False) -> ApiKey:
        self.refreshes.append(refresh)
        if self.error is not None:
            raise self.error
        if refresh:
            self._version += 1
        return ApiKey(f"key-{self._version}")


class FakeDeadline:
    def __init__(self, seconds: float = 900.0) -> None:
        self.seconds = seconds

    def seconds_left(self) -> float:
        return self.seconds


def rebalance_trigger(
    api: FakeApi,
    keys: FakeKeys,
    policy: RetryPolicy,
    *,
    clock: FakeClock,
    reports: ReconcileReports | None = None,
    **options: Any,
) -> RebalanceTrigger:
    """The trigger as composition.py wires it: its Reconciler looks through the same API."""
    reconciler = Reconciler(api, reports or RecordingTelemetry(), clock=clock)
    return RebalanceTrigger(api, keys, policy, clock=clock, reconciler=reconciler, **options)


def outcome_follower(
    api: FakeApi,
    *,
    clock: FakeClock,
    guard: InMemoryGuard | None = None,
    telemetry: FollowReports | None = None,
    follow_ups: InMemoryQueue | None = None,
    dead_letters: InMemoryQueue | None = None,
    events: OutcomeEvents | None = None,
    history: History | None = None,
    **options: Any,
) -> OutcomeFollower:
    """The follower as composition.py wires it, in memory: what a test does not name is a fresh
    fake; rebalances are followed for two hours, the first look 30 s after the trigger."""
    return OutcomeFollower(
        api,
        FakeKeys(),
        InMemoryGuard() if guard is None else guard,
        RecordingTelemetry() if telemetry is None else telemetry,
        follow_ups=InMemoryQueue(FollowUpError, "follow-ups") if follow_ups is None else follow_ups,
        dead_letters=InMemoryQueue(DeadLetterWriteError, "dlq")
        if dead_letters is None
        else dead_letters,
        events=events,
        clock=clock,
        history=RecordingHistory() if history is None else history,
        **{"max_seconds": 7200, "first_delay_seconds": 30, **options},
    )
