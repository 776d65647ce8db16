"""The follow-up queue's messages (domain/follow_ups.py) on fakes: each follow-up's look done at
once in prepare, then each message settled on its own: settled when looked at, delivered again
when it could not be (no time, another look writing right now), raised to the batch when what it
had to write was not written, lettered verbatim when it is no follow-up. How a look reads the
rebalance is test_follow.py's."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from glider_trigger.domain.batch import SETTLED, Settlement
from glider_trigger.domain.errors import (
    DeadLetterWriteError,
    FollowUpError,
    InvalidInputError,
    OnceInProgressError,
)
from glider_trigger.domain.follow_ups import FollowUpDelivery
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import FinalOutcome, FollowUp, Message, RebalanceState
from glider_trigger.domain.trigger_input import follow_up_body
from glider_trigger.inbound.events import parse_follow_up_body
from tests.fakes.api import FakeApi, FakeDeadline, outcome_follower, retry_policy
from tests.fakes.clock import FakeClock
from tests.fakes.guard import InMemoryGuard
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

NOW = 50_000.0
RUNNING = RebalanceState("running", None)
FAILED = RebalanceState("failed", FinalOutcome.FAILED, error="execution reverted")


def follow_up(rebalance_id: str = "rebal_1", number: int = 1) -> FollowUp:
    return FollowUp("p1", rebalance_id, False, "sqs:m-1", NOW - 60, number, "fake-v1")


class BusyGuard(InMemoryGuard):
    """Another invocation is doing what these `once` keys guard right now."""

    def __init__(self, *busy: str) -> None:
        super().__init__()
        self.busy = set(busy)

    def once(self, key: str, action: Callable[[], None]) -> None:
        if key in self.busy:
            raise OnceInProgressError(f"{key} is being done by another invocation")
        super().once(key, action)


class World:
    def __init__(
        self, *states: RebalanceState, guard: InMemoryGuard | None = None, following: bool = True
    ) -> None:
        self.api = FakeApi()
        self.api.states = list(states) or [RUNNING]  # type: ignore[arg-type]
        self.guard = guard or InMemoryGuard()
        self.follow_ups = InMemoryQueue(FollowUpError, "follow-ups")
        self.dlq = InMemoryQueue(DeadLetterWriteError, "dlq")
        self.telemetry = RecordingTelemetry()
        follower = outcome_follower(
            self.api,
            clock=FakeClock(NOW),
            guard=self.guard,
            telemetry=self.telemetry,
            follow_ups=self.follow_ups,
            dead_letters=self.dlq,
        )
        self.delivery = FollowUpDelivery(
            follower if following else None,
            LetterBox(self.dlq, self.guard, self.telemetry),
            max_concurrency=4,
        )

    def batch(self, *bodies: str, seconds_left: float = 900) -> list[Settlement]:
        invocation = Invocation(FakeDeadline(seconds_left), retry_policy())
        messages = [(Message(f"f-{i}", body), parsed(body)) for i, body in enumerate(bodies)]
        prepared = self.delivery.prepare(messages, invocation)
        return [self.delivery.settle(record, invocation) for record in prepared]


def parsed(body: str) -> FollowUp | InvalidInputError:
    try:
        return parse_follow_up_body(body)
    except InvalidInputError as exc:
        return exc


def test_a_follow_up_looked_at_is_settled_and_its_next_one_sent() -> None:
    world = World(RUNNING)

    [settlement] = world.batch(follow_up_body(follow_up()))

    assert settlement == SETTLED
    assert world.api.state_calls == 1
    [after] = world.follow_ups.messages
    assert json.loads(after.body)["followUp"]["number"] == 2


def test_a_follow_up_that_ends_its_rebalance_is_settled_with_its_letter() -> None:
    world = World(FAILED)

    [settlement] = world.batch(follow_up_body(follow_up()))

    assert settlement == SETTLED
    assert world.follow_ups.messages == []
    assert len(world.dlq.messages) == 1


def test_a_batchs_follow_ups_are_each_looked_at_and_settled_on_their_own() -> None:
    world = World(RUNNING)

    settlements = world.batch(
        *(follow_up_body(follow_up(f"rebal_{i}")) for i in range(3)), "not a follow-up"
    )

    assert settlements == [SETTLED] * 4
    assert world.api.state_calls == 3
    assert len(world.follow_ups.messages) == 3


def test_with_no_time_left_nothing_is_looked_at_and_the_message_comes_back() -> None:
    world = World(RUNNING)

    [settlement] = world.batch(follow_up_body(follow_up()), seconds_left=0)

    assert settlement.redeliver is True
    assert world.api.state_calls == 0
    assert world.follow_ups.messages == []


def test_a_look_another_invocation_is_writing_right_now_comes_back_later() -> None:
    # Two deliveries that got one rebalance, or a redelivery: the holder writes it; if it dies,
    # this message's next receive does.
    world = World(RUNNING, guard=BusyGuard("rebalance:rebal_1#follow-up@2"))

    [settlement] = world.batch(follow_up_body(follow_up()))

    assert settlement.redeliver is True
    assert world.follow_ups.messages == []


def test_a_next_follow_up_not_written_is_raised_to_the_batch() -> None:
    # The batch handler keeps the message (QueueWriteError): its next receive sends it.
    world = World(RUNNING)
    world.follow_ups.refuse_next = 1

    with pytest.raises(FollowUpError):
        world.batch(follow_up_body(follow_up()))

    [settlement] = world.batch(follow_up_body(follow_up()))
    assert settlement == SETTLED
    assert len(world.follow_ups.messages) == 1


def test_an_outcome_letter_not_written_is_raised_to_the_batch() -> None:
    world = World(FAILED)
    world.dlq.refuse_next = 1

    with pytest.raises(DeadLetterWriteError):
        world.batch(follow_up_body(follow_up()))


def test_a_body_that_is_no_follow_up_is_dead_lettered_verbatim_and_settled() -> None:
    world = World()
    body = json.dumps({"portfolioId": "p1"})  # a trigger on the follow-up queue

    [settlement] = world.batch(body)

    assert settlement == SETTLED
    assert [m.body for m in world.dlq.messages] == [body]
    assert world.telemetry.named("unparsable") == [{"reason": "MALFORMED_INPUT"}]
    assert world.api.state_calls == 0
    assert world.api.calls == []  # never triggered from the follow-up queue


def test_with_following_switched_off_a_follow_up_is_settled_unlooked() -> None:
    # FOLLOW_OUTCOMES turned off since they were sent: the queue is drained, nothing called.
    world = World(RUNNING, following=False)

    [settlement] = world.batch(follow_up_body(follow_up()))

    assert settlement == SETTLED
    assert world.api.state_calls == 0
    assert world.follow_ups.messages == []
    assert world.dlq.messages == []
