"""The work queue's use case on in-memory fakes of its ports (domain/delivery.py): a message
naming one portfolio triggered and settled by its fate, a message naming several split into one
message each under the same delivery key, a portfolio held elsewhere deferred on the last
receive, and the letters each of them writes, in milliseconds. The fate itself is
test_fate.py's; an event's intake test_intake.py's; the real handler's, the integration tests'."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from glider_trigger.domain.errors import (
    Certainty,
    DeadLetterWriteError,
    FailureClass,
    FanOutError,
    FollowUpError,
)
from glider_trigger.domain.models import (
    Failed,
    Message,
    Next,
    OutcomeKind,
    Receipt,
    Triggered,
)
from glider_trigger.inbound.events import parse_event, parse_sqs_body
from tests.fakes.api import (
    FakeApi,
    FakeDeadline,
    outcome_follower,
    refused,
)
from tests.fakes.clock import FakeClock
from tests.fakes.guard import InMemoryGuard
from tests.fakes.queues import InMemoryQueue
from tests.fakes.world import LIFETIME, parsed
from tests.fakes.world import DeliveryWorld as World

RECEIPT = Receipt("rebal_1", "sched_1", "req_1", "corr_1")
NOT_FOUND = refused("NOT_FOUND", FailureClass.PERMANENT)
DOWN = refused("SERVER_ERROR", FailureClass.TRANSIENT)
UNEXPECTED_2XX = refused(
    "UNEXPECTED_RESPONSE", FailureClass.PERMANENT, certainty=Certainty.ACTED_UNREADABLE
)


def portfolio_ids(bodies: Sequence[dict[str, object]]) -> list[object]:
    return [body["portfolioId"] for body in bodies]


# --- a message naming one portfolio --------------------------------------------------------


def test_a_message_naming_one_portfolio_triggers_it_and_is_settled() -> None:
    world = World(FakeApi(RECEIPT))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is False
    assert [call[0] for call in world.api.calls] == ["p1"]
    assert world.letters() == []
    assert world.work.messages == []
    assert [line["kind"] for line in world.telemetry.named("outcome")] == [OutcomeKind.TRIGGERED]
    assert world.telemetry.named("received") == [{"count": 1}]


def test_a_redelivered_message_does_not_trigger_again() -> None:
    world = World(FakeApi(RECEIPT))

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"}, receive=2)

    assert len(world.api.calls) == 1
    kinds = [line["kind"] for line in world.telemetry.named("outcome")]
    assert kinds == [OutcomeKind.TRIGGERED, OutcomeKind.ALREADY_TRIGGERED]


def test_a_permanent_failure_settles_the_message_with_a_letter_naming_its_delivery() -> None:
    world = World(FakeApi(NOT_FOUND))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is False
    assert world.letters() == [
        {
            "portfolioId": "p1",
            "skipScheduleValidation": False,
            "deliveryKey": "sqs:m-1",
        }
    ]
    assert world.dlq.messages[0].attributes["reason"] == "NOT_FOUND"
    assert world.actions() == [Next.DEAD_LETTERED]


def test_a_transient_failure_asks_for_redelivery_without_a_letter() -> None:
    world = World(FakeApi(then=DOWN))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is True
    assert settlement.not_before_seconds is None
    assert world.letters() == []
    assert world.actions() == [Next.RETRY]


def test_a_retry_after_longer_than_the_invocation_waits_becomes_the_earliest_redelivery() -> None:
    slow_down = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=600)
    world = World(FakeApi(slow_down))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is True
    assert settlement.not_before_seconds == 600
    assert len(world.api.calls) == 1  # not waited out, not retried in the invocation


def test_on_its_last_receive_what_still_fails_is_dead_lettered_here() -> None:
    world = World(FakeApi(then=DOWN), max_receive_count=3)

    settlement = world.message({"portfolioId": "p1"}, receive=3)

    assert settlement.redeliver is False
    assert world.letters() == [
        {
            "portfolioId": "p1",
            "skipScheduleValidation": False,
            "deliveryKey": "sqs:m-1",
        }
    ]
    assert world.actions() == [Next.DEAD_LETTERED_LAST_RECEIVE]


def test_an_unparsable_message_is_dead_lettered_verbatim_and_settled() -> None:
    world = World(FakeApi())

    settlement = world.message({"portfolioIds": "not a list"})

    assert settlement.redeliver is False
    assert [m.body for m in world.dlq.messages] == [json.dumps({"portfolioIds": "not a list"})]
    assert world.events.letters == []  # it names no portfolio: the DLQ's alarm announces it
    assert world.api.calls == []


def test_a_settled_failure_is_not_sent_again_and_its_letter_is_written_once() -> None:
    world = World(FakeApi(UNEXPECTED_2XX))

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"}, receive=2)  # a redelivery of the same message

    assert len(world.api.calls) == 1
    assert len(world.letters()) == 1
    assert world.actions() == [Next.DEAD_LETTERED, Next.NOTHING_DEAD_LETTERED_BEFORE]


def test_a_replayed_letter_of_a_settled_failure_keeps_it_in_the_dlq() -> None:
    world = World(FakeApi(UNEXPECTED_2XX))
    world.message({"portfolioId": "p1"})
    [letter] = world.letters()

    world.message(letter, message_id="m-replay")  # the DLQ moved back to the work queue

    assert len(world.api.calls) == 1  # the same delivery: never sent again
    assert len(world.letters()) == 2  # and its letter is back in the DLQ


# --- letters and their events --------------------------------------------------------------


def test_each_portfolios_letter_is_announced_once_written_naming_it_and_why() -> None:
    world = World(FakeApi(NOT_FOUND))

    world.message({"portfolioIds": ["p1", "a/b"], "idempotencyKey": "up-1"})  # split
    world.drain()

    announced = {w.portfolio_id: w for w in world.events.letters}
    assert set(announced) == {"p1", "a/b"}
    assert announced["p1"].letter.attributes["reason"] == "NOT_FOUND"
    assert announced["a/b"].letter.attributes["reason"] == "INVALID_PORTFOLIO_ID"
    assert {w.delivery_key for w in world.events.letters} == {"key:up-1"}
    assert [w.letter for w in world.events.letters] == world.dlq.messages


def test_no_letter_no_event_and_a_refused_event_fails_nothing() -> None:
    refusing = World(FakeApi(NOT_FOUND))
    refusing.dlq.refuse_next = 1
    with pytest.raises(DeadLetterWriteError):
        refusing.message({"portfolioId": "p1"})
    assert refusing.events.letters == []

    world = World(FakeApi(NOT_FOUND))
    world.events.refuse_next = 1
    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is False
    assert portfolio_ids(world.letters()) == ["p1"]
    assert world.telemetry.named("letter_events_not_put") == [{"portfolio_ids": ["p1"]}]


def test_a_dlq_that_refuses_fails_the_settlement_after_the_outcome_is_logged() -> None:
    # The batch handler keeps the message (QueueWriteError): its redelivery letters it then.
    world = World(FakeApi(NOT_FOUND))
    world.dlq.refuse_next = 1

    with pytest.raises(DeadLetterWriteError):
        world.message({"portfolioId": "p1"})

    assert [name for name, _ in world.telemetry.events if name != "received"] == [
        "outcome",
        "dead_letter_write_failed",
    ]


# --- a message naming several portfolios: split ------------------------------------------


def test_a_message_naming_several_ids_is_split_into_one_message_each_under_its_key() -> None:
    world = World(FakeApi(then=RECEIPT))

    settlement = world.message({"portfolioIds": ["p1", "p2", "p1", "a/b"]})

    assert settlement.redeliver is False
    assert world.api.calls == []  # nothing is triggered by the split itself
    assert portfolio_ids(world.work.bodies()) == ["p1", "p2"]
    assert {body["deliveryKey"] for body in world.work.bodies()} == {"sqs:m-1"}
    # Its rejected id is dead-lettered at the split, under the same delivery.
    assert world.letters() == [{"portfolioId": "a/b", "skipScheduleValidation": False}]
    assert world.dlq.messages[0].attributes["reason"] == "INVALID_PORTFOLIO_ID"
    assert world.telemetry.named("queued") == [
        {"count": 2, "queue_url": world.work.queue_url, "dedupe_key": "sqs:m-1"}
    ]

    world.drain()

    assert sorted(call[0] for call in world.api.calls) == ["p1", "p2"]
    # What the split messages triggered is the split message's delivery, portfolio by portfolio.
    assert set(world.guard.settled) == {"sqs:m-1#p1", "sqs:m-1#p2"}


def test_a_split_that_comes_back_triggers_nothing_twice() -> None:
    world = World(FakeApi(then=RECEIPT))

    world.message({"portfolioIds": ["p1", "p2"]})
    world.drain()
    world.message({"portfolioIds": ["p1", "p2"]}, receive=2)  # e.g. its settle was lost
    world.drain()

    assert sorted(call[0] for call in world.api.calls) == ["p1", "p2"]
    kinds = [line["kind"] for line in world.telemetry.named("outcome")]
    assert kinds.count(OutcomeKind.ALREADY_TRIGGERED) == 2


def test_a_one_id_message_with_a_rejected_id_is_split_too() -> None:
    world = World(FakeApi(RECEIPT))

    world.message({"portfolioIds": ["p1", 7]})

    assert world.api.calls == []
    assert portfolio_ids(world.work.bodies()) == ["p1"]
    assert portfolio_ids(world.letters()) == [7]


def test_a_split_the_work_queue_refuses_is_delivered_again_and_letters_nothing_yet() -> None:
    world = World(FakeApi())
    world.work.refuse_next = 1

    with pytest.raises(FanOutError):  # the batch handler keeps the message
        world.message({"portfolioIds": ["p1", "p2", "a/b"]})

    assert world.telemetry.named("fan_out_failed") == [{"messages": 2}]
    assert world.letters() == []

    world.message({"portfolioIds": ["p1", "p2", "a/b"]}, receive=2)

    assert portfolio_ids(world.work.bodies()) == ["p1", "p2"]
    assert portfolio_ids(world.letters()) == ["a/b"]  # lettered once, by the split that held


def test_a_split_refused_on_the_last_receive_dead_letters_every_id_under_its_key() -> None:
    world = World(FakeApi(), max_receive_count=2)
    world.work.refuse_next = 1

    settlement = world.message({"portfolioIds": ["p1", "p2", "a/b"]}, receive=2)

    assert settlement.redeliver is False
    assert world.api.calls == []
    by_id = {body["portfolioId"]: body for body in world.letters()}
    assert set(by_id) == {"p1", "p2", "a/b"}  # the rejected id too
    assert by_id["p1"]["deliveryKey"] == by_id["p2"]["deliveryKey"] == "sqs:m-1"
    reasons = {m.attributes["reason"] for m in world.dlq.messages}
    assert reasons == {"FAN_OUT_FAILED", "INVALID_PORTFOLIO_ID"}


def test_a_split_keeps_what_its_message_says_may_have_started() -> None:
    window = {"after": "2026-12-01T06:00:00.000Z", "before": "2026-12-01T06:01:00.000Z"}
    world = World(FakeApi())

    world.message({"portfolioIds": ["p1", "p2"], "deliveryKey": "k", "mayHaveStarted": window})

    assert [body["mayHaveStarted"] for body in world.work.bodies()] == [window, window]
    assert {body["deliveryKey"] for body in world.work.bodies()} == {"k"}


# --- held in progress by another invocation ------------------------------------------------


def test_a_portfolio_held_elsewhere_is_delivered_again_before_the_last_receive() -> None:
    world = World(FakeApi())
    world.guard.held.add("sqs:m-1#p1")

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is True
    assert world.api.calls == []
    assert world.letters() == []
    assert world.work.messages == []


def test_held_elsewhere_on_the_last_receive_it_is_deferred_past_the_holders_window() -> None:
    world = World(FakeApi(), max_receive_count=3)
    world.guard.held.add("key:k#p1")

    settlement = world.message({"portfolioId": "p1", "idempotencyKey": "k"}, receive=3)

    assert settlement.redeliver is False
    assert world.letters() == []  # a replay of a letter would be a second trigger
    [deferred] = world.work.messages
    assert deferred.delay_seconds == LIFETIME + 5
    assert json.loads(deferred.body)["deliveryKey"] == "key:k"
    assert world.actions() == [Next.DEFERRED]
    assert world.telemetry.named("deferred") == [{"count": 1, "delay_seconds": LIFETIME + 5}]


def test_a_deferral_comes_back_to_the_same_delivery_and_triggers_once_the_holder_is_gone() -> None:
    world = World(FakeApi(RECEIPT), max_receive_count=1)
    world.guard.held.add("key:k#p1")
    world.message({"portfolioId": "p1", "idempotencyKey": "k"})

    world.guard.held.clear()  # the holder failed without sending
    world.drain()

    assert [call[0] for call in world.api.calls] == ["p1"]
    assert set(world.guard.settled) == {"key:k#p1"}


def test_a_deferral_carries_no_window_guessed_from_the_holders_lifetime() -> None:
    world = World(FakeApi(), max_receive_count=1)
    world.guard.held.add("key:k#p1")

    world.message({"portfolioId": "p1", "idempotencyKey": "k"})

    [deferred] = world.work.bodies()
    later = parse_event(deferred, default_skip=False).requests[0]
    # What the holder may be sending is its own record with the guard, read when this returns.
    assert later.may_have_started == ()


def test_a_deferral_the_work_queue_refuses_keeps_the_message_and_letters_nothing() -> None:
    world = World(FakeApi(), max_receive_count=1)
    world.guard.held.add("sqs:m-1#p1")
    world.work.refuse_next = 1

    with pytest.raises(FanOutError):
        world.message({"portfolioId": "p1"})

    assert world.telemetry.named("deferral_failed") == [{"messages": 1}]
    assert world.letters() == []


# --- what the invocation learns ------------------------------------------------------------


def test_after_a_systemic_failure_no_other_portfolio_of_the_batch_is_attempted() -> None:
    forbidden = refused("FORBIDDEN", FailureClass.SYSTEMIC)
    world = World(FakeApi(forbidden, then=RECEIPT), max_concurrency=1)

    settlements = world.batch(
        *(Message(f"m-{i}", json.dumps({"portfolioId": f"p{i}"})) for i in (1, 2, 3))
    )

    assert len(world.api.calls) == 1
    assert [s.redeliver for s in settlements] == [True, True, True]  # none lost, none lettered
    assert world.letters() == []
    # p2 and p3 were stopped by the halt, which reports the cause that halted the invocation.
    reasons = {line["portfolio_id"]: line["reason"] for line in world.telemetry.named("outcome")}
    assert reasons == {"p1": "FORBIDDEN", "p2": "FORBIDDEN", "p3": "FORBIDDEN"}


def test_a_bug_while_triggering_costs_one_message_a_retry_not_the_batch() -> None:
    class BrokenGuard(InMemoryGuard):
        def run(self, key, request, trigger):  # type: ignore[no-untyped-def]
            if request.portfolio_id == "p1":
                raise RuntimeError("a bug")
            return super().run(key, request, trigger)

    world = World(FakeApi(RECEIPT), guard=BrokenGuard())

    settlements = world.batch(
        Message("m-1", json.dumps({"portfolioId": "p1"})),
        Message("m-2", json.dumps({"portfolioId": "p2"})),
    )

    assert [s.redeliver for s in settlements] == [True, False]
    assert world.telemetry.named("unexpected_error") == [{"portfolio_id": "p1"}]
    assert [call[0] for call in world.api.calls] == ["p2"]


def test_with_no_time_left_nothing_is_asked_and_the_message_comes_back() -> None:
    world = World(FakeApi())
    invocation = world.service.begin(FakeDeadline(0), lifetime_seconds=LIFETIME)
    message = Message("m-1", json.dumps({"portfolioId": "p1"}))

    [record] = world.service.prepare([(message, parsed(message))], invocation)
    settlement = world.service.settle(record, invocation)

    assert settlement.redeliver is True
    assert world.api.calls == []
    assert isinstance(record.outcome, Failed)
    assert record.outcome.error.reason == "DEADLINE_EXCEEDED"


# --- what a later delivery is told about attempts that may have started a rebalance -------


def test_a_letter_after_lost_answers_tells_its_replay_when_to_look() -> None:
    lost = refused("CONNECTION_ERROR", FailureClass.TRANSIENT, certainty=Certainty.LOST)
    world = World(FakeApi(then=lost), max_receive_count=1)

    world.message({"portfolioId": "p1"})

    [letter] = world.letters()
    window = letter["mayHaveStarted"]
    assert isinstance(window, dict)
    assert set(window) == {"after", "before"}
    replayed = parse_sqs_body(json.dumps(letter), message_id="m-replay", default_skip=False)
    assert len(replayed.requests[0].may_have_started) == 1


def test_a_redelivery_looks_for_exactly_what_its_earlier_receive_recorded() -> None:
    lost = refused("CONNECTION_ERROR", FailureClass.TRANSIENT, certainty=Certainty.LOST)
    world = World(FakeApi(lost, RECEIPT), max_attempts=1)
    message = Message("m-1", json.dumps({"portfolioId": "p1"}), 1)

    [first] = world.service.prepare([(message, parsed(message))], world.invocation())
    again = Message("m-1", message.body, 2)
    [second] = world.service.prepare([(again, parsed(again))], world.invocation())

    lost_attempt = first.outcome
    assert isinstance(lost_attempt, Failed)
    assert len(lost_attempt.uncertain) == 1
    # The guard kept the lost attempt's window; the second receive gets exactly that one.
    assert second.outcome is not None
    assert second.outcome.request.may_have_started == lost_attempt.uncertain


def test_a_refused_attempt_leaves_nothing_for_a_redelivery_to_look_up() -> None:
    world = World(FakeApi(refused("RATE_LIMITED", FailureClass.TRANSIENT), RECEIPT), max_attempts=1)
    message = Message("m-1", json.dumps({"portfolioId": "p1"}), 1)

    world.service.prepare([(message, parsed(message))], world.invocation())
    again = Message("m-1", message.body, 2)
    [second] = world.service.prepare([(again, parsed(again))], world.invocation())

    assert isinstance(second.outcome, Triggered)
    assert second.outcome.request.may_have_started == ()


def test_a_trigger_is_followed_once_however_often_its_delivery_comes_back() -> None:
    follow_ups = InMemoryQueue(FollowUpError, "follow-ups")
    api = FakeApi(RECEIPT)
    guard = InMemoryGuard()
    dlq = InMemoryQueue(DeadLetterWriteError, "dlq")
    follower = outcome_follower(
        api, clock=FakeClock(), guard=guard, follow_ups=follow_ups, dead_letters=dlq
    )
    world = World(api, guard=guard, dlq=dlq, follower=follower)

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"}, receive=2)  # already triggered, already followed

    [follow_up] = follow_ups.messages
    assert json.loads(follow_up.body)["followUp"]["rebalanceId"] == "rebal_1"
    assert follow_up.delay_seconds == 30
