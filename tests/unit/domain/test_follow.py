"""Following rebalances to their outcome, on fakes of the API, the queues, the guard, the bus
and the clock: one status call per follow-up, a growing interval, one final outcome each."""

from __future__ import annotations

import contextlib
import json

import pytest

from glider_trigger.domain.errors import (
    DeadLetterWriteError,
    FailureClass,
    FollowUpError,
    OutcomeEventError,
)
from glider_trigger.domain.follow import follow_delay, most_status_calls
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    FinalOutcome,
    FollowUp,
    InputSource,
    RebalanceState,
    Receipt,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.domain.trigger_input import follow_up_body, parse_follow_up
from tests.fakes.api import (
    WORST_CASE,
    FakeApi,
    FakeDeadline,
    outcome_follower,
    refused,
    retry_policy,
)
from tests.fakes.clock import FakeClock
from tests.fakes.events import InMemoryEvents
from tests.fakes.guard import InMemoryGuard
from tests.fakes.pacing import FakePacing
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

NOW = 50_000.0
REQUEST = TriggerRequest("p1", True, InputSource(SourceKind.SQS, "m-1", {}, "sqs:m-1"))
COMPLETED = RebalanceState(
    "completed", FinalOutcome.COMPLETED, "0xabc", 123, "125000", NOW + 1, NOW + 91
)
FAILED = RebalanceState("failed", FinalOutcome.FAILED, error="execution reverted")
RUNNING = RebalanceState("running", None)


class World:
    def __init__(
        self,
        *states: RebalanceState | Exception,
        max_seconds: int = 7200,
        pacing: FakePacing | None = None,
    ) -> None:
        self.api = FakeApi()
        self.api.states = list(states) or [RUNNING]  # type: ignore[arg-type]
        self.guard = InMemoryGuard()
        self.follow_ups = InMemoryQueue(FollowUpError, "follow-ups")
        self.dlq = InMemoryQueue(DeadLetterWriteError, "dlq")
        self.events = InMemoryEvents()
        self.telemetry = RecordingTelemetry()
        self.clock = FakeClock(NOW)
        self.follower = outcome_follower(
            self.api,
            clock=self.clock,
            guard=self.guard,
            telemetry=self.telemetry,
            follow_ups=self.follow_ups,
            dead_letters=self.dlq,
            events=self.events,
            max_seconds=max_seconds,
            pacing=pacing,
        )

    def follow(self, follow_up: FollowUp, seconds_left: float = 900) -> bool:
        invocation = Invocation(FakeDeadline(seconds_left), retry_policy())
        return self.follower.follow(follow_up, invocation)

    def sent(self) -> list[FollowUp]:
        return [parse_follow_up(json.loads(m.body)) for m in self.follow_ups.messages]

    def outcomes(self) -> list[tuple[FinalOutcome, str | None]]:
        return [(e["outcome"], e["reason"]) for e in self.telemetry.named("rebalance_outcome")]


def triggered(rebalance_id: str | None = "rebal_1", *, again: bool = False) -> Triggered:
    receipt = Receipt(rebalance_id, "sched_1", "req_1", "corr_1")
    return Triggered(REQUEST, receipt, attempts=1, already_triggered=again)


def first_follow_up(number: int = 1, *, triggered_at: float = NOW) -> FollowUp:
    return FollowUp("p1", "rebal_1", True, "sqs:m-1", triggered_at, number, "fake-v1")


def test_a_trigger_schedules_its_first_follow_up_after_the_first_delay() -> None:
    world = World()

    world.follower.start(triggered())
    world.follower.start(triggered("rebal_old", again=True))  # followed when it was triggered

    assert world.sent() == [first_follow_up()]
    assert [m.delay_seconds for m in world.follow_ups.messages] == [30]


def test_a_rebalance_whose_id_is_unknown_ends_unknown_at_once() -> None:
    world = World()

    world.follower.start(triggered(None))

    assert world.sent() == []
    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "REBALANCE_ID_UNKNOWN")]


def test_a_follow_up_queue_that_refuses_is_reported_not_raised() -> None:
    world = World()
    world.follow_ups.refuse_next = 1

    world.follower.start(triggered())

    assert world.telemetry.named("follow_up_not_sent") == [{"messages": 1, "again": False}]
    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "FOLLOW_UP_NOT_SENT")]


def test_a_next_follow_up_the_queue_refuses_is_said_and_raised_so_its_look_comes_again() -> None:
    world = World(RUNNING)
    world.follow_ups.refuse_next = 1

    with pytest.raises(FollowUpError):
        world.follow(first_follow_up())

    assert world.telemetry.named("follow_up_not_sent") == [{"messages": 1, "again": True}]
    assert world.sent() == []
    assert world.follow(first_follow_up())  # delivered again: the next look is sent then
    assert world.sent() == [first_follow_up(2)]


def test_a_running_rebalance_is_looked_at_again_later_and_later() -> None:
    world = World(RUNNING)

    world.follow(first_follow_up(1))
    world.follow(first_follow_up(2))

    assert [f.number for f in world.sent()] == [2, 3]
    assert [m.delay_seconds for m in world.follow_ups.messages] == [60, 120]
    assert world.api.state_calls == 2
    assert world.outcomes() == []


def test_a_completed_rebalance_is_reported_once_with_its_transaction() -> None:
    world = World(COMPLETED)

    world.follow(first_follow_up())
    world.follow(first_follow_up())  # the same follow-up delivered again

    assert world.outcomes() == [(FinalOutcome.COMPLETED, None)]
    [report] = world.events.published
    assert report.state is not None
    assert report.state.transaction_hash == "0xabc"
    assert report.duration_seconds == 90
    assert world.dlq.messages == []
    assert world.sent() == []


def test_a_failed_rebalance_gets_a_letter_an_event_and_is_never_triggered_again() -> None:
    world = World(FAILED)

    world.follow(first_follow_up())

    assert world.outcomes() == [(FinalOutcome.FAILED, "execution reverted")]
    [letter] = world.dlq.messages
    assert letter.attributes["reason"] == "REBALANCE_FAILED"
    assert json.loads(letter.body)["idempotencyKey"] == "retrigger:rebal_1"
    assert world.api.calls == []


def test_not_final_within_the_limit_ends_unknown() -> None:
    world = World(RUNNING, max_seconds=600)
    world.clock.at = NOW + 600

    world.follow(first_follow_up(4))

    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "NOT_FINAL_IN_TIME")]
    assert world.sent() == []


def test_the_last_follow_up_comes_no_later_than_the_limit() -> None:
    world = World(RUNNING, max_seconds=600)
    world.clock.at = NOW + 590

    world.follow(first_follow_up(5))

    assert [m.delay_seconds for m in world.follow_ups.messages] == [10]


def test_a_state_that_cannot_be_read_is_looked_at_again() -> None:
    world = World(refused("SERVER_ERROR", FailureClass.TRANSIENT))

    world.follow(first_follow_up())

    assert [f.number for f in world.sent()] == [2]
    assert world.telemetry.named("state_unreadable") == [
        {"rebalance_id": "rebal_1", "reason": "SERVER_ERROR"}
    ]


def test_a_bus_that_refuses_makes_the_follow_up_come_back_and_report_then() -> None:
    world = World(COMPLETED)
    world.events.refuse_next = 1

    with pytest.raises(OutcomeEventError):
        world.follow(first_follow_up())
    world.follow(first_follow_up())  # SQS delivers it again

    assert len(world.events.published) == 1
    assert world.outcomes() == [(FinalOutcome.COMPLETED, None)]


def test_without_time_for_a_status_call_it_is_left_for_later() -> None:
    world = World(COMPLETED)

    assert world.follow(first_follow_up(), seconds_left=1) is False
    assert world.api.state_calls == 0


def test_the_interval_doubles_up_to_15_minutes_and_bounds_the_calls() -> None:
    assert [follow_delay(n, 30) for n in range(1, 8)] == [30, 60, 120, 240, 480, 900, 900]
    assert most_status_calls(7200, 30) == 13


def test_a_bus_that_refuses_neither_hides_a_failure_nor_writes_its_letter_twice() -> None:
    world = World(FAILED)
    world.events.refuse_next = 2

    for _ in range(3):  # SQS delivers the follow-up until the event is on the bus
        with contextlib.suppress(OutcomeEventError):
            world.follow(first_follow_up())

    assert world.outcomes() == [(FinalOutcome.FAILED, "execution reverted")]  # logged at once
    assert len(world.dlq.messages) == 1
    assert len(world.events.published) == 1


def test_an_outcome_decided_with_the_trigger_is_announced_too() -> None:
    world = World()

    world.follower.start(triggered(None))

    [report] = world.events.published
    assert (report.outcome, report.reason) == (FinalOutcome.UNKNOWN, "REBALANCE_ID_UNKNOWN")


def test_a_rebalance_awaiting_a_person_is_said_once_and_still_followed() -> None:
    awaiting = RebalanceState("awaiting_user", None, awaiting_user=True)
    world = World(awaiting, awaiting, COMPLETED)

    world.follow(first_follow_up(1))
    world.follow(first_follow_up(2))
    world.follow(first_follow_up(2))  # a redelivery of the second look
    world.follow(first_follow_up(3))

    assert world.telemetry.named("awaiting_user") == [{"rebalance_id": "rebal_1"}]
    assert [f.number for f in world.sent()] == [2, 3]
    assert world.outcomes() == [(FinalOutcome.COMPLETED, None)]


def test_a_rebalance_started_on_the_other_api_version_ends_unknown_without_a_status_call() -> None:
    world = World(COMPLETED)
    other = FollowUp("p1", "rebal_1", True, "sqs:m-1", NOW, 3, api_version="fake-v2")

    world.follow(other)

    assert world.api.state_calls == 0
    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "API_VERSION_CHANGED")]
    assert world.sent() == []


def test_a_rebalance_the_api_does_not_know_ends_unknown_at_once() -> None:
    world = World(refused("NOT_FOUND", FailureClass.PERMANENT))

    world.follow(first_follow_up())

    assert world.api.state_calls == 1
    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "REBALANCE_NOT_FOUND")]
    assert world.sent() == []


def test_a_follow_up_records_the_api_version_it_was_started_on() -> None:
    world = World()

    world.follower.start(triggered())

    assert [f.api_version for f in world.sent()] == ["fake-v1"]


def test_a_status_call_waits_for_its_slot_no_later_than_the_deadline_allows() -> None:
    pacing = FakePacing()
    world = World(RUNNING, pacing=pacing)

    world.follow(first_follow_up(), seconds_left=100)

    assert pacing.budgets == [100 - WORST_CASE]  # the call's worst case still fits after it
    assert world.api.state_calls == 1


def test_without_a_slot_before_the_deadline_no_status_call_is_made_and_it_comes_back() -> None:
    world = World(COMPLETED, pacing=FakePacing(slots=0))

    assert world.follow(first_follow_up()) is False  # SQS delivers it again
    assert world.api.state_calls == 0
    assert world.telemetry.named("looked") == []
    assert world.sent() == []
    assert world.outcomes() == []


YEAR = 365 * 86_400


def test_a_triggered_at_in_the_future_is_read_as_the_time_it_was_received() -> None:
    ahead = json.loads(follow_up_body(first_follow_up(triggered_at=NOW + YEAR)))
    skewed = json.loads(follow_up_body(first_follow_up(triggered_at=NOW + 2)))

    assert parse_follow_up(ahead, now=NOW).triggered_at == NOW
    assert parse_follow_up(skewed, now=NOW).triggered_at == NOW + 2  # clocks differ a little


def test_a_follow_up_dated_a_year_ahead_ends_unknown_within_the_limit_of_its_first_read() -> None:
    world = World(RUNNING, max_seconds=600)
    body = follow_up_body(first_follow_up(triggered_at=NOW + YEAR))

    for _ in range(50):  # each follow-up read as the function receives it, when it is due
        world.follow(parse_follow_up(json.loads(body), now=world.clock.at))
        if world.outcomes() or not world.follow_ups.messages:
            break
        sent = world.follow_ups.messages.pop()
        world.clock.at += sent.delay_seconds
        body = sent.body

    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "NOT_FINAL_IN_TIME")]
    assert world.clock.at - NOW == 600
    assert world.api.state_calls <= most_status_calls(600, 30)


def test_a_follow_up_numbered_beyond_the_most_status_calls_ends_unknown_at_once() -> None:
    world = World(RUNNING)

    world.follow(first_follow_up(10**9))
    world.follow(first_follow_up(most_status_calls(7200, 30)))  # the last a chain can reach

    assert world.outcomes() == [(FinalOutcome.UNKNOWN, "NOT_FINAL_IN_TIME")]
    assert world.api.state_calls == 1  # the last one's; none for 10**9
    assert [f.number for f in world.sent()] == [most_status_calls(7200, 30) + 1]
