"""An event's intake on in-memory fakes (domain/intake.py): an input that is not an SQS record is
validated and queued, one work-queue message per portfolio under its delivery's key, and nothing
is triggered until the work queue delivers them (drained here through the DeliveryService)."""

from __future__ import annotations

import pytest

from glider_trigger.domain.errors import (
    DeadLetterWriteError,
    FailureClass,
    FanOutError,
    InvalidInputError,
)
from glider_trigger.domain.models import InputSource, Receipt, SourceKind
from glider_trigger.inbound.events import parse_event
from tests.fakes.api import (
    FakeApi,
    refused,
)
from tests.fakes.world import DeliveryWorld as World

RECEIPT = Receipt("rebal_1", "sched_1", "req_1", "corr_1")
NOT_FOUND = refused("NOT_FOUND", FailureClass.PERMANENT)
SCHEDULE = "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/daily"


def test_an_event_queues_one_message_per_portfolio_and_triggers_nothing_itself() -> None:
    world = World(FakeApi(then=RECEIPT))

    accepted = world.event({"portfolioIds": ["p1", "p2", "p1"], "idempotencyKey": "up-1"})

    assert accepted.queued == 2
    assert world.api.calls == []
    assert [b["portfolioId"] for b in world.work.bodies()] == ["p1", "p2"]
    assert {b["deliveryKey"] for b in world.work.bodies()} == {"key:up-1"}
    assert world.telemetry.named("queued") == [
        {"count": 2, "queue_url": world.work.queue_url, "dedupe_key": "key:up-1"}
    ]

    world.drain()

    assert sorted(call[0] for call in world.api.calls) == ["p1", "p2"]
    # The guard keys an inline trigger of the event used: what it triggered before stays done.
    assert set(world.guard.settled) == {"key:up-1#p1", "key:up-1#p2"}


def test_an_event_without_its_own_key_is_keyed_by_the_lambda_request_id() -> None:
    world = World(FakeApi(RECEIPT))

    world.event({"portfolioId": "p1"}, request_id="abc")
    world.event({"portfolioId": "p1"}, request_id="abc")  # Lambda's own retry

    assert [b["deliveryKey"] for b in world.work.bodies()] == ["lambda:abc", "lambda:abc"]
    world.drain()
    assert len(world.api.calls) == 1
    assert set(world.guard.settled) == {"lambda:abc#p1"}


def test_two_invocations_of_an_event_without_a_key_are_two_deliveries() -> None:
    world = World(FakeApi(RECEIPT, RECEIPT))

    world.event({"portfolioId": "p1"}, request_id="abc")
    world.event({"portfolioId": "p1"}, request_id="def")  # a second invocation, not a retry
    world.drain()

    assert len(world.api.calls) == 2


def test_a_schedules_run_is_carried_by_its_messages_and_keys_them() -> None:
    world = World(FakeApi(RECEIPT))
    run = {"scheduleArn": SCHEDULE, "scheduledTime": "2026-12-01T06:00:00Z"}

    world.event({"portfolioId": "p1", **run}, request_id="abc")
    world.event({"portfolioId": "p1", **run}, request_id="retry")  # Scheduler's own retry

    bodies = world.work.bodies()
    assert [(b["scheduleArn"], b["scheduledTime"]) for b in bodies] == [tuple(run.values())] * 2
    assert bodies[0]["deliveryKey"] == bodies[1]["deliveryKey"]
    assert not str(bodies[0]["deliveryKey"]).startswith("lambda:")
    world.drain()
    assert len(world.api.calls) == 1


def test_what_an_event_says_may_have_started_is_queued_with_it() -> None:
    # A letter after lost answers, replayed as an event (a direct invocation): its portfolio is
    # looked for in that window before anything is sent again, as it was when events triggered
    # inline.
    window = {"after": "2026-12-01T06:00:00.000Z", "before": "2026-12-01T06:01:00.000Z"}
    world = World(FakeApi())

    world.event({"portfolioId": "p1", "deliveryKey": "k", "mayHaveStarted": window})

    [body] = world.work.bodies()
    assert body["mayHaveStarted"] == window
    [original] = parse_event(
        {"portfolioId": "p1", "mayHaveStarted": window}, default_skip=False
    ).requests
    [queued] = parse_event(body, default_skip=False).requests
    assert queued.may_have_started == original.may_have_started != ()


def test_rejected_ids_are_dead_lettered_at_once_under_the_delivery_key() -> None:
    world = World(FakeApi())

    accepted = world.event({"portfolioIds": ["p1", "a/b"]}, request_id="abc")

    assert [r.portfolio_id for r in accepted.rejected] == ["a/b"]
    assert [b["portfolioId"] for b in world.work.bodies()] == ["p1"]
    assert [b["portfolioId"] for b in world.dlq.bodies()] == ["a/b"]
    [announced] = world.events.letters
    assert (announced.portfolio_id, announced.delivery_key) == ("a/b", "lambda:abc")
    assert world.telemetry.named("rejected")[0]["reason"] == "INVALID_PORTFOLIO_ID"
    assert world.telemetry.named("received") == [{"count": 1}]


def test_an_event_of_rejected_ids_only_queues_nothing_and_letters_them() -> None:
    world = World(FakeApi())

    accepted = world.event({"portfolioIds": ["a/b", 7]})

    assert accepted.queued == 0
    assert world.work.messages == []
    assert world.telemetry.named("queued") == []
    assert [b["portfolioId"] for b in world.dlq.bodies()] == ["a/b", 7]


def test_a_work_queue_that_refuses_fails_the_invocation_and_letters_nothing() -> None:
    # Lambda retries the event (the same request id: the same keys); nothing is half-done.
    world = World(FakeApi(RECEIPT))
    world.work.refuse_next = 1

    with pytest.raises(FanOutError):
        world.event({"portfolioIds": ["p1", "a/b"]}, request_id="abc")

    assert world.telemetry.named("fan_out_failed") == [{"messages": 1}]
    assert world.dlq.messages == []
    assert world.events.letters == []

    world.event({"portfolioIds": ["p1", "a/b"]}, request_id="abc")  # Lambda's retry
    world.drain()

    assert [b["portfolioId"] for b in world.dlq.bodies()] == ["a/b"]
    assert len(world.api.calls) == 1


def test_a_dlq_that_refuses_fails_the_invocation_and_its_retry_triggers_nothing_twice() -> None:
    world = World(FakeApi(RECEIPT))
    world.dlq.refuse_next = 1

    with pytest.raises(DeadLetterWriteError):
        world.event({"portfolioIds": ["p1", "a/b"]}, request_id="abc")
    world.event({"portfolioIds": ["p1", "a/b"]}, request_id="abc")  # Lambda's retry
    world.drain()

    assert len(world.api.calls) == 1
    assert [b["portfolioId"] for b in world.dlq.bodies()] == ["a/b"]


def test_an_input_that_is_not_one_is_dead_lettered_verbatim_and_triggers_nothing() -> None:
    world = World(FakeApi())
    source = InputSource(SourceKind.EVENTBRIDGE, delivery_id="ev-1")

    accepted = world.intake.refuse('{"nothing": 1}', InvalidInputError("no ids"), source)

    assert accepted.unparsable is not None
    assert (accepted.queued, accepted.rejected) == (0, ())
    assert [m.body for m in world.dlq.messages] == ['{"nothing": 1}']
    assert world.work.messages == []
    assert world.events.letters == []  # it names no portfolio
    assert world.telemetry.named("unparsable") == [{"reason": "MALFORMED_INPUT"}]


def test_a_failure_of_a_queued_portfolio_is_dead_lettered_with_the_events_key() -> None:
    world = World(FakeApi(NOT_FOUND))

    world.event({"portfolioId": "p1", "idempotencyKey": "up-1"})
    world.drain()

    assert world.dlq.bodies() == [
        {
            "portfolioId": "p1",
            "skipScheduleValidation": False,
            "deliveryKey": "key:up-1",
        }
    ]
    assert world.dlq.messages[0].attributes["reason"] == "NOT_FOUND"
