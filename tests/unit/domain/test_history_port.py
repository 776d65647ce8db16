"""What the domain writes to the history: one entry per trigger a delivery made (triggered, or
failed), none for a delivery that found its outcome settled or held elsewhere, and one per
followed rebalance's final outcome however often its follow-up comes back."""

from __future__ import annotations

from glider_trigger.domain.errors import (
    Certainty,
    FailureClass,
)
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
from tests.fakes.api import (
    FakeApi,
    FakeDeadline,
    outcome_follower,
    refused,
    retry_policy,
)
from tests.fakes.clock import FakeClock
from tests.fakes.events import InMemoryEvents
from tests.fakes.history import RecordingHistory
from tests.fakes.world import DeliveryWorld

RECEIPT = Receipt("rebal_1", "sched_1", "req_1", "corr_1")
DOWN = refused("SERVER_ERROR", FailureClass.TRANSIENT)
NOT_FOUND = refused("NOT_FOUND", FailureClass.PERMANENT)
UNEXPECTED_2XX = refused(
    "UNEXPECTED_RESPONSE", FailureClass.PERMANENT, certainty=Certainty.ACTED_UNREADABLE
)


def World(api: FakeApi) -> DeliveryWorld:
    """One try a receive: a failure is written, then its redelivery."""
    return DeliveryWorld(api, max_attempts=1)


def written(world: DeliveryWorld) -> list[tuple[str, str]]:
    return [
        (o.request.portfolio_id, "triggered" if isinstance(o, Triggered) else o.error.reason)
        for o in world.history.triggers
    ]


def test_each_trigger_and_each_failure_is_written_once() -> None:
    world = World(FakeApi(RECEIPT, NOT_FOUND))

    world.message({"portfolioId": "p1"}, message_id="m-1")
    world.message({"portfolioId": "p2"}, message_id="m-2")

    assert written(world) == [("p1", "triggered"), ("p2", "NOT_FOUND")]


def test_a_split_writes_nothing_and_each_of_its_portfolios_is_written_when_triggered() -> None:
    world = World(FakeApi(RECEIPT, NOT_FOUND))

    world.message({"portfolioIds": ["p1", "p2"]})  # split: nothing triggered yet
    assert written(world) == []
    for number, queued in enumerate(world.work.bodies()):
        world.message(queued, message_id=f"w-{number}")

    assert written(world) == [("p1", "triggered"), ("p2", "NOT_FOUND")]


def test_each_receive_that_failed_is_written_and_the_redelivery_that_finds_it_done_is_not() -> None:
    world = World(FakeApi(DOWN, then=RECEIPT))

    world.message({"portfolioId": "p1"}, receive=1)  # 5xx: redelivered
    world.message({"portfolioId": "p1"}, receive=2)  # triggered
    world.message({"portfolioId": "p1"}, receive=3)  # a duplicate: nothing sent, nothing new

    assert written(world) == [("p1", "SERVER_ERROR"), ("p1", "triggered")]


def test_a_settled_failure_that_comes_back_is_not_written_again() -> None:
    world = World(FakeApi(UNEXPECTED_2XX))

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"})

    assert written(world) == [("p1", "UNEXPECTED_RESPONSE")]


def test_a_portfolio_held_by_another_invocation_is_left_to_its_holder() -> None:
    world = World(FakeApi(RECEIPT))
    world.guard.held.add("sqs:m-1#p1")

    world.message({"portfolioId": "p1"})

    assert world.history.triggers == []
    assert world.api.calls == []


def test_a_final_outcome_is_written_once_however_often_its_follow_up_arrives() -> None:
    api = FakeApi()
    api.states = [
        RebalanceState("failed", FinalOutcome.FAILED, error="execution reverted"),
        RebalanceState("failed", FinalOutcome.FAILED, error="execution reverted"),
    ]
    history = RecordingHistory()
    follower = outcome_follower(api, clock=FakeClock(), events=InMemoryEvents(), history=history)
    follow_up = FollowUp("p1", "rebal_1", False, "sqs:m-1", 1_000.0, 1, "fake-v1")

    for _ in range(2):  # the same follow-up delivered twice
        follower.follow(follow_up, Invocation(FakeDeadline(), retry_policy()))

    [report] = history.outcomes
    assert (report.outcome, report.reason) == (FinalOutcome.FAILED, "execution reverted")


def test_a_rebalance_that_cannot_be_followed_is_written_unknown_with_its_trigger() -> None:
    history = RecordingHistory()
    follower = outcome_follower(FakeApi(), clock=FakeClock(), history=history)
    request = TriggerRequest("p1", False, InputSource(SourceKind.SQS, "m-1", {}, "sqs:m-1"))
    cut_off = Receipt(None, None, None, None, unread="connection reset")

    follower.start(Triggered(request, cut_off, attempts=1))

    [report] = history.outcomes
    assert (report.outcome, report.reason) == (FinalOutcome.UNKNOWN, "REBALANCE_ID_UNKNOWN")
