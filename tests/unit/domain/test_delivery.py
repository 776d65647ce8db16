"""The delivery use case on in-memory fakes of its ports: what each input kind's failures
become (dead letters, redeliveries, deferrals, fan-out), in milliseconds. The integration tests
check the same promises through the real handler, moto and the Glider emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from glider_trigger.domain.delivery import (
    DeferralError,
    DeliveryRules,
    DeliveryService,
    Message,
    Report,
    Settlement,
)
from glider_trigger.domain.errors import (
    Certainty,
    DeadLetterWriteError,
    FailureClass,
    FanOutError,
    FollowUpError,
    InvalidInputError,
)
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    Next,
    OutcomeKind,
    Receipt,
    SourceKind,
    Triggered,
)
from glider_trigger.domain.trigger import RebalanceTrigger
from glider_trigger.inbound.events import parse_event, parse_sqs_body
from tests.fakes.api import FakeApi, FakeDeadline, FakeKeys, refused, retry_policy
from tests.fakes.clock import FakeClock
from tests.fakes.events import InMemoryEvents
from tests.fakes.guard import InMemoryGuard
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

RECEIPT = Receipt("rebal_1", "sched_1", "req_1", "corr_1", "triggered")
NOT_FOUND = refused("NOT_FOUND", FailureClass.PERMANENT)
DOWN = refused("SERVER_ERROR", FailureClass.TRANSIENT)
UNEXPECTED_2XX = refused(
    "UNEXPECTED_RESPONSE", FailureClass.PERMANENT, certainty=Certainty.ACTED_UNREADABLE
)
LIFETIME = 60.0


@dataclass
class World:
    """The use case wired to fakes: the API answers `api`'s script."""

    api: FakeApi
    guard: InMemoryGuard = field(default_factory=InMemoryGuard)
    dlq: InMemoryQueue = field(default_factory=lambda: InMemoryQueue(DeadLetterWriteError, "dlq"))
    work: InMemoryQueue | None = field(default_factory=lambda: InMemoryQueue(FanOutError, "work"))
    telemetry: RecordingTelemetry = field(default_factory=RecordingTelemetry)
    events: InMemoryEvents = field(default_factory=InMemoryEvents)
    max_receive_count: int | None = 5
    fanout_threshold: int = 50
    max_attempts: int = 4

    def __post_init__(self) -> None:
        policy = retry_policy(
            base_delay_seconds=0, max_delay_seconds=8.0, max_attempts=self.max_attempts
        )
        self.service = DeliveryService(
            RebalanceTrigger(self.api, FakeKeys(), policy, clock=FakeClock()),
            self.guard,
            self.dlq,
            self.telemetry,
            rules=DeliveryRules(
                max_concurrency=4,
                fanout_threshold=self.fanout_threshold,
                max_receive_count=self.max_receive_count,
            ),
            work_queue=self.work,
            events=self.events,
        )

    def invocation(self, request_id: str = "req-1") -> Invocation:
        return self.service.begin(FakeDeadline(), request_id=request_id, lifetime_seconds=LIFETIME)

    def event(self, event: object, request_id: str = "req-1") -> Report:
        parsed = parse_event(event, default_skip=False)
        return self.service.deliver_event(parsed, self.invocation(request_id))

    def message(self, body: object, *, message_id: str = "m-1", receive: int = 1) -> Settlement:
        text = json.dumps(body)
        message = Message(message_id, text, receive)
        try:
            parsed: object = parse_sqs_body(text, message_id=message_id, default_skip=False)
        except InvalidInputError as exc:
            parsed = exc
        invocation = self.invocation()
        [prepared] = self.service.trigger_messages([(message, parsed)], invocation)  # type: ignore[list-item]
        return self.service.settle(prepared, invocation)

    def letters(self) -> list[dict[str, object]]:
        return self.dlq.bodies()


# --- events --------------------------------------------------------------------------------


def test_an_event_triggers_each_id_once_and_reports_it() -> None:
    world = World(FakeApi(then=RECEIPT))

    report = world.event({"portfolioIds": ["p1", "p2", "p1"]})

    assert sorted(o.request.portfolio_id for o in report.outcomes) == ["p1", "p2"]
    assert all(isinstance(o, Triggered) for o in report.outcomes)
    assert len(world.api.calls) == 2
    assert world.letters() == []


def test_an_event_without_its_own_key_is_keyed_by_the_lambda_request_id() -> None:
    world = World(FakeApi(RECEIPT))

    report = world.event({"portfolioId": "p1"}, request_id="abc")
    again = world.event({"portfolioId": "p1"}, request_id="abc")  # Lambda's own retry

    assert report.source.dedupe_key == "lambda:abc"
    [outcome] = again.outcomes
    assert isinstance(outcome, Triggered)
    assert outcome.already_triggered
    assert len(world.api.calls) == 1


def test_a_failure_on_an_event_is_dead_lettered_with_its_delivery_key() -> None:
    world = World(FakeApi(NOT_FOUND))

    world.event({"portfolioId": "p1", "idempotencyKey": "up-1"})

    assert world.letters() == [
        {"portfolioId": "p1", "skipScheduleValidation": False, "deliveryKey": "key:up-1"}
    ]
    [line] = world.telemetry.named("outcome")
    assert (line["kind"], line["action"]) == (OutcomeKind.FAILED, Next.DEAD_LETTERED)


def test_rejected_ids_are_dead_lettered_and_the_rest_goes_on() -> None:
    world = World(FakeApi(RECEIPT))

    report = world.event({"portfolioIds": ["p1", "a/b"]})

    assert [r.portfolio_id for r in report.rejected] == ["a/b"]
    assert [o.request.portfolio_id for o in report.outcomes] == ["p1"]
    assert [letter["portfolioId"] for letter in world.letters()] == ["a/b"]


def test_an_unparsable_event_is_dead_lettered_verbatim() -> None:
    world = World(FakeApi())

    source = InputSource(SourceKind.DIRECT)
    report = world.service.reject_event('{"nothing": 1}', InvalidInputError("no ids"), source)

    assert report.unparsable is not None
    assert [m.body for m in world.dlq.messages] == ['{"nothing": 1}']
    assert world.api.calls == []


def test_each_portfolios_letter_is_announced_once_written_naming_it_and_why() -> None:
    world = World(FakeApi(NOT_FOUND))

    world.event({"portfolioIds": ["p1", "a/b"], "idempotencyKey": "up-1"})
    world.service.reject_event(
        '{"nothing": 1}', InvalidInputError("no ids"), InputSource(SourceKind.DIRECT)
    )

    announced = {w.portfolio_id: w for w in world.events.letters}
    assert set(announced) == {"p1", "a/b"}  # the unparsable input names no portfolio: no event
    assert announced["p1"].letter.attributes["reason"] == "NOT_FOUND"
    assert announced["p1"].delivery_key == "key:up-1"
    assert [w.letter for w in world.events.letters] == world.dlq.messages[:2]


def test_no_letter_no_event_and_a_refused_event_fails_nothing() -> None:
    refusing = World(FakeApi(NOT_FOUND))
    refusing.dlq.refuse_next = 1
    with pytest.raises(DeadLetterWriteError):
        refusing.event({"portfolioId": "p1"})
    assert refusing.events.letters == []

    world = World(FakeApi(NOT_FOUND))
    world.events.refuse_next = 1
    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is False
    assert [letter["portfolioId"] for letter in world.letters()] == ["p1"]
    assert world.telemetry.named("letter_events_not_put") == [{"portfolio_ids": ["p1"]}]


def test_a_dlq_that_refuses_fails_the_invocation_after_the_outcome_is_logged() -> None:
    world = World(FakeApi(NOT_FOUND))
    world.dlq.refuse_next = 1

    with pytest.raises(DeadLetterWriteError):
        world.event({"portfolioId": "p1"})

    assert [name for name, _ in world.telemetry.events if name != "received"] == [
        "outcome",
        "dead_letter_write_failed",
    ]


def test_more_ids_than_the_threshold_are_fanned_out_with_the_delivery_key() -> None:
    world = World(FakeApi(), fanout_threshold=2)

    report = world.event({"portfolioIds": ["p1", "p2", "p3"], "idempotencyKey": "k"})

    assert report.fanned_out == 3
    assert world.api.calls == []
    assert world.work is not None
    assert {b["idempotencyKey"] for b in world.work.bodies()} == {"key:k"}
    assert [b["portfolioId"] for b in world.work.bodies()] == ["p1", "p2", "p3"]


def test_a_fan_out_the_work_queue_refuses_fails_the_invocation() -> None:
    world = World(FakeApi(), fanout_threshold=1)
    assert world.work is not None
    world.work.refuse_next = 1

    with pytest.raises(FanOutError):
        world.event({"portfolioIds": ["p1", "p2"]})

    assert world.telemetry.named("fan_out_failed") == [{"messages": 2}]


# --- held in progress by another invocation ------------------------------------------------


def test_a_portfolio_held_elsewhere_is_deferred_past_the_holders_window() -> None:
    world = World(FakeApi())
    world.guard.held.add("key:k#p1")

    report = world.event({"portfolioId": "p1", "idempotencyKey": "k"})

    [outcome] = report.outcomes
    assert isinstance(outcome, Failed)
    assert outcome.held_elsewhere
    assert world.letters() == []  # a replay of a letter would be a second trigger
    assert world.work is not None
    [deferred] = world.work.messages
    assert deferred.delay_seconds == LIFETIME + 5
    assert json.loads(deferred.body)["deliveryKey"] == "key:k"
    [line] = world.telemetry.named("outcome")
    assert line["action"] is Next.DEFERRED


def test_without_a_work_queue_a_held_portfolio_fails_the_invocation_after_the_letters() -> None:
    world = World(FakeApi(NOT_FOUND), work=None)
    world.guard.held.add("key:k#p1")

    with pytest.raises(DeferralError):
        world.event({"portfolioIds": ["p1", "p2"], "idempotencyKey": "k"})

    assert [letter["portfolioId"] for letter in world.letters()] == ["p2"]


# --- messages ------------------------------------------------------------------------------


def test_a_permanent_failure_settles_the_message_with_a_letter() -> None:
    world = World(FakeApi(NOT_FOUND))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is False
    assert world.letters()[0]["deliveryKey"] == "sqs:m-1"


def test_a_transient_failure_asks_for_redelivery_without_a_letter() -> None:
    world = World(FakeApi(then=DOWN))

    settlement = world.message({"portfolioId": "p1"})

    assert settlement.redeliver is True
    assert settlement.not_before_seconds is None
    assert "SERVER_ERROR" in settlement.why
    assert world.letters() == []
    [line] = world.telemetry.named("outcome")
    assert line["action"] is Next.RETRY


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
        {"portfolioId": "p1", "skipScheduleValidation": False, "deliveryKey": "sqs:m-1"}
    ]
    [line] = world.telemetry.named("outcome")
    assert line["action"] is Next.DEAD_LETTERED_LAST_RECEIVE


def test_without_a_receive_limit_the_redrive_has_the_last_word() -> None:
    world = World(FakeApi(then=DOWN), max_receive_count=None)

    assert world.message({"portfolioId": "p1"}, receive=99).redeliver is True
    assert world.letters() == []


def test_an_unparsable_message_is_dead_lettered_verbatim_and_settled() -> None:
    world = World(FakeApi())

    settlement = world.message({"portfolioIds": "not a list"})

    assert settlement.redeliver is False
    assert world.dlq.messages[0].body == json.dumps({"portfolioIds": "not a list"})


def test_a_redelivered_message_does_not_trigger_again() -> None:
    world = World(FakeApi(RECEIPT))

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"})

    assert len(world.api.calls) == 1
    kinds = [line["kind"] for line in world.telemetry.named("outcome")]
    assert kinds == [OutcomeKind.TRIGGERED, OutcomeKind.ALREADY_TRIGGERED]


def test_a_settled_failure_is_not_sent_again_and_its_letter_is_written_once() -> None:
    world = World(FakeApi(UNEXPECTED_2XX))

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"})  # a redelivery of the same message

    assert len(world.api.calls) == 1
    assert len(world.letters()) == 1
    actions = [line["action"] for line in world.telemetry.named("outcome")]
    assert actions == [Next.DEAD_LETTERED, Next.NOTHING_DEAD_LETTERED_BEFORE]


def test_a_replayed_letter_of_a_settled_failure_keeps_it_in_the_dlq() -> None:
    world = World(FakeApi(UNEXPECTED_2XX))
    world.message({"portfolioId": "p1"})
    [letter] = world.letters()

    world.message(letter, message_id="m-replay")  # the DLQ moved back to the work queue

    assert len(world.api.calls) == 1  # the same delivery: never sent again
    assert len(world.letters()) == 2  # and its letter is back in the DLQ


# --- what the invocation learns ------------------------------------------------------------


def test_after_a_systemic_failure_no_other_portfolio_is_attempted() -> None:
    forbidden = refused("FORBIDDEN", FailureClass.SYSTEMIC)
    world = World(FakeApi(forbidden, then=RECEIPT))
    world.service = DeliveryService(
        RebalanceTrigger(world.api, FakeKeys(), retry_policy(), clock=FakeClock()),
        world.guard,
        world.dlq,
        world.telemetry,
        rules=DeliveryRules(max_concurrency=1, fanout_threshold=50, max_receive_count=None),
        work_queue=world.work,
    )

    report = world.event({"portfolioIds": ["p1", "p2", "p3"]})

    assert len(world.api.calls) == 1
    assert {o.failure_class for o in report.outcomes if isinstance(o, Failed)} == {
        FailureClass.SYSTEMIC
    }
    assert len(world.letters()) == 3


def test_a_bug_while_triggering_costs_one_portfolio_a_retry_not_the_batch() -> None:
    class BrokenGuard(InMemoryGuard):
        def run(self, key, request, trigger):  # type: ignore[no-untyped-def]
            if request.portfolio_id == "p1":
                raise RuntimeError("a bug")
            return super().run(key, request, trigger)

    world = World(FakeApi(RECEIPT), guard=BrokenGuard())

    settlement = world.message({"portfolioIds": ["p1", "p2"]})

    assert settlement.redeliver is True
    assert world.telemetry.named("unexpected_error") == [{"portfolio_id": "p1"}]
    assert len(world.api.calls) == 1


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


def test_a_deferral_carries_no_window_guessed_from_the_holders_lifetime() -> None:
    world = World(FakeApi())
    world.guard.held.add("key:k#p1")

    world.event({"portfolioId": "p1", "idempotencyKey": "k"})

    assert world.work is not None
    [deferred] = world.work.bodies()
    later = parse_event(deferred, default_skip=False).requests[0]
    # What the holder may be sending is its own record with the guard, read when this returns.
    assert later.may_have_started == ()


def test_a_redelivery_looks_for_exactly_what_its_earlier_receive_recorded() -> None:
    lost = refused("CONNECTION_ERROR", FailureClass.TRANSIENT, certainty=Certainty.LOST)
    world = World(FakeApi(lost, RECEIPT), max_attempts=1)
    message = Message("m-1", json.dumps({"portfolioId": "p1"}), 1)
    parsed = parse_sqs_body(message.body, message_id="m-1", default_skip=False)

    [first] = world.service.trigger_messages([(message, parsed)], world.invocation())
    again = Message("m-1", message.body, 2)
    [second] = world.service.trigger_messages([(again, parsed)], world.invocation())

    [lost_attempt] = first.outcomes
    assert isinstance(lost_attempt, Failed)
    assert len(lost_attempt.uncertain) == 1
    # The guard kept the lost attempt's window; the second receive gets exactly that one.
    assert second.outcomes[0].request.may_have_started == lost_attempt.uncertain


def test_a_refused_attempt_leaves_nothing_for_a_redelivery_to_look_up() -> None:
    world = World(FakeApi(refused("RATE_LIMITED", FailureClass.TRANSIENT), RECEIPT), max_attempts=1)
    message = Message("m-1", json.dumps({"portfolioId": "p1"}), 1)
    parsed = parse_sqs_body(message.body, message_id="m-1", default_skip=False)

    world.service.trigger_messages([(message, parsed)], world.invocation())
    [second] = world.service.trigger_messages(
        [(Message("m-1", message.body, 2), parsed)], world.invocation()
    )

    assert second.outcomes[0].request.may_have_started == ()
    assert isinstance(second.outcomes[0], Triggered)


def test_a_trigger_is_followed_once_however_often_its_delivery_comes_back() -> None:
    follow_ups = InMemoryQueue(FollowUpError, "follow-ups")
    world = World(FakeApi(RECEIPT))
    world.service._follower = OutcomeFollower(  # type: ignore[attr-defined]
        world.api,
        FakeKeys(),
        world.guard,
        world.telemetry,
        follow_ups=follow_ups,
        dead_letters=world.dlq,
        events=None,
        max_seconds=7200,
        first_delay_seconds=30,
        clock=FakeClock(),
    )

    world.message({"portfolioId": "p1"})
    world.message({"portfolioId": "p1"})  # a redelivery: already triggered, already followed

    [follow_up] = follow_ups.messages
    assert json.loads(follow_up.body)["followUp"]["rebalanceId"] == "rebal_1"
    assert follow_up.delay_seconds == 30
