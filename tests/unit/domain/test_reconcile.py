"""Reconciling lost answers: before sending a trigger again after an answer that proves
nothing, the portfolio's recent rebalances are looked at, on fakes of the API and the clock."""

from __future__ import annotations

import pytest

from glider_trigger.domain.errors import ApiError, Certainty, FailureClass
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    Receipt,
    SourceKind,
    Triggered,
    TriggerRequest,
    Window,
)
from glider_trigger.domain.ports import StartedRebalance
from glider_trigger.domain.reconcile import CLOCK_SKEW_SECONDS, JOINED_BEFORE_SECONDS, Reconciler
from glider_trigger.domain.trigger import RebalanceTrigger
from tests.fakes.api import FakeApi, FakeDeadline, FakeKeys, refused, retry_policy
from tests.fakes.clock import FakeClock
from tests.fakes.guard import RecordedAttempts
from tests.fakes.pacing import FakePacing
from tests.fakes.telemetry import RecordingTelemetry

NOW = 1_000.0  # the wall clock of every attempt here
REQUEST = TriggerRequest("port_abc123", False, InputSource(SourceKind.SQS, "m-1", {}, "sqs:m-1"))
RECEIPT = Receipt("rebal_new", "sched_1", "req_1", "corr_1")
LOST = ApiError(
    "connection reset after the request was sent",
    reason="CONNECTION_ERROR",
    failure_class=FailureClass.TRANSIENT,
    certainty=Certainty.LOST,
)
SERVER_ERROR = ApiError(
    "HTTP 503",
    reason="SERVER_ERROR",
    failure_class=FailureClass.TRANSIENT,
    certainty=Certainty.UNPROVEN,
)
RATE_LIMITED = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=0.1)
FORBIDDEN = refused("FORBIDDEN", FailureClass.SYSTEMIC)


def listed(started_at: float, rebalance_id: str = "rebal_lost") -> StartedRebalance:
    return StartedRebalance(rebalance_id, started_at)


def run(
    api: FakeApi,
    *,
    request: TriggerRequest = REQUEST,
    reconciler: Reconciler | None = None,
    telemetry: RecordingTelemetry | None = None,
    clock: FakeClock | None = None,
    pacing: FakePacing | None = None,
) -> Triggered | Failed:
    telemetry = telemetry or RecordingTelemetry()
    if reconciler is None:
        reconciler = Reconciler(api, telemetry, clock=FakeClock(NOW), pacing=pacing)
    policy = retry_policy(base_delay_seconds=0)
    trigger = RebalanceTrigger(
        api,
        FakeKeys(),
        policy,
        clock=clock or FakeClock(NOW),
        reconciler=reconciler,
        pacing=pacing,
    )
    return trigger.trigger(request, Invocation(FakeDeadline(), policy), RecordedAttempts())


def test_a_lost_answers_rebalance_is_found_and_not_sent_again() -> None:
    api = FakeApi(LOST)
    api.listed = [listed(NOW + 0.2)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id == "rebal_lost"
    assert outcome.receipt.reconciled
    assert len(api.calls) == 1  # one POST: the lost one
    assert api.list_calls == 1


def test_nothing_listed_means_the_trigger_is_sent_again_and_flagged() -> None:
    api = FakeApi(LOST, RECEIPT)

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id == "rebal_new"
    assert not outcome.receipt.reconciled
    assert outcome.maybe_delivered_attempts == 1
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    ("started_at", "taken"),
    [
        (NOW - CLOCK_SKEW_SECONDS - 0.1, False),  # before the attempt: another delivery's
        (NOW - CLOCK_SKEW_SECONDS + 0.1, True),  # within the clock-skew allowance
        (NOW + CLOCK_SKEW_SECONDS - 0.1, True),
        (NOW + CLOCK_SKEW_SECONDS + 0.1, False),  # after the look itself: not ours
    ],
)
def test_only_a_rebalance_started_in_the_attempts_window_is_taken(
    started_at: float, taken: bool
) -> None:
    api = FakeApi(LOST, RECEIPT)
    api.listed = [listed(started_at)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.reconciled is taken
    assert len(api.calls) == (1 if taken else 2)


def test_a_5xx_proves_no_refusal_so_it_is_reconciled_too() -> None:
    api = FakeApi(SERVER_ERROR)
    api.listed = [listed(NOW)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.reconciled
    assert len(api.calls) == 1


def test_a_refusal_is_not_reconciled() -> None:
    api = FakeApi(RATE_LIMITED, RECEIPT)
    api.listed = [listed(NOW)]  # would match, but a 429 started nothing

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.reconciled
    assert api.list_calls == 0
    assert len(api.calls) == 2


def test_a_list_that_cannot_be_read_means_the_trigger_is_sent_again() -> None:
    api = FakeApi(LOST, RECEIPT)
    api.list_error = SERVER_ERROR
    telemetry = RecordingTelemetry()

    outcome = run(api, telemetry=telemetry)

    assert isinstance(outcome, Triggered)
    assert outcome.maybe_delivered_attempts == 1
    assert len(api.calls) == 2
    assert telemetry.named("reconcile_failed") == [
        {"portfolio_id": "port_abc123", "reason": "SERVER_ERROR"}
    ]


def test_a_key_that_may_not_read_status_stops_reconciling_with_one_warning() -> None:
    api = FakeApi(LOST, RECEIPT, LOST, RECEIPT)
    api.list_error = FORBIDDEN
    telemetry = RecordingTelemetry()
    reconciler = Reconciler(api, telemetry, clock=FakeClock(NOW))

    first = run(api, reconciler=reconciler, telemetry=telemetry)
    second = run(api, reconciler=reconciler, telemetry=telemetry)

    assert isinstance(first, Triggered)
    assert isinstance(second, Triggered)
    assert api.list_calls == 1  # not asked again in this execution environment
    assert telemetry.named("reconcile_forbidden") == [{"reason": "FORBIDDEN"}]


def test_a_delivery_that_may_have_been_attempted_before_looks_first() -> None:
    api = FakeApi()  # no POST scripted: sending one would fail the test
    api.listed = [listed(NOW - 60)]
    earlier = TriggerRequest(
        REQUEST.portfolio_id, False, REQUEST.source, may_have_started=(Window(NOW - 62, NOW - 58),)
    )

    outcome = run(api, request=earlier)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.reconciled
    assert api.calls == []


def test_an_accepted_trigger_whose_answer_was_cut_off_gets_its_rebalance_id() -> None:
    cut_off = Receipt(None, None, "req_1", "corr_1", unread="HTTP 200, but the body was cut off")
    api = FakeApi(cut_off)
    api.listed = [listed(NOW + 0.1, "rebal_found")]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id == "rebal_found"
    assert outcome.receipt.reason is None
    assert outcome.receipt.request_id == "req_1"
    assert len(api.calls) == 1


def test_a_failure_after_lost_answers_keeps_their_window_for_its_dead_letter() -> None:
    api = FakeApi(LOST, then=LOST)

    outcome = run(api)

    assert isinstance(outcome, Failed)
    assert outcome.uncertain == (Window(NOW, NOW),)
    assert api.list_calls == 3  # before each of the 3 repeats


def test_before_looking_it_gives_a_timed_out_attempt_as_long_again() -> None:
    api = FakeApi(LOST, RECEIPT)
    clock = FakeClock(readings=[NOW, NOW + 10.0, NOW + 20.0, NOW + 20.0, NOW + 21.0])
    policy = retry_policy(base_delay_seconds=0.01, max_delay_seconds=30)
    trigger = RebalanceTrigger(
        api,
        FakeKeys(),
        policy,
        clock=clock,
        reconciler=Reconciler(api, RecordingTelemetry(), clock=FakeClock(NOW + 20)),
    )

    trigger.trigger(REQUEST, Invocation(FakeDeadline(), policy), RecordedAttempts())

    assert clock.delays == [10.0]  # the 10 s the lost attempt waited, not the 0.01 s backoff
    assert api.list_calls == 1


def test_an_inherited_window_looked_at_is_never_reopened_nor_carried_on() -> None:
    # A replayed letter from 3 days ago: its window was looked at and held nothing. A 503 now
    # must not make the next look reach back 3 days (yesterday's rebalance is not ours).
    days_ago = NOW - 3 * 86_400
    api = FakeApi(SERVER_ERROR, RECEIPT)
    api.listed = [listed(NOW - 86_400, "rebal_yesterday")]
    replayed = TriggerRequest(
        REQUEST.portfolio_id,
        False,
        REQUEST.source,
        may_have_started=(Window(days_ago, days_ago + 1),),
    )

    outcome = run(api, request=replayed)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id == "rebal_new"  # sent again, yesterday's not taken
    assert api.list_calls == 2
    api_fails = FakeApi(SERVER_ERROR, then=SERVER_ERROR)
    failed = run(api_fails, request=replayed)
    assert isinstance(failed, Failed)
    assert failed.uncertain == (Window(NOW, NOW),)  # the checked inherited window is not carried


def test_an_inherited_window_that_could_not_be_looked_at_is_carried_on() -> None:
    days_ago = NOW - 3 * 86_400
    api = FakeApi(refused("NOT_FOUND", FailureClass.PERMANENT))
    api.list_error = SERVER_ERROR
    replayed = TriggerRequest(
        REQUEST.portfolio_id,
        False,
        REQUEST.source,
        may_have_started=(Window(days_ago, days_ago + 1),),
    )

    failed = run(api, request=replayed)

    assert isinstance(failed, Failed)
    assert failed.uncertain == (Window(days_ago, days_ago + 1),)


# --- an API that tells when, not which (v2's lastRebalanceAt), and one that joins (v2) -----


def test_a_rebalance_listed_by_time_only_closes_the_lost_answer_with_its_id_unknown() -> None:
    api = FakeApi(LOST)
    api.listed = [StartedRebalance(None, NOW + 0.2)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.reconciled
    assert outcome.receipt.rebalance_id is None  # found, but it cannot be followed
    assert len(api.calls) == 1


def test_an_answer_cut_off_keeps_its_id_unknown_when_only_a_time_is_listed() -> None:
    api = FakeApi(Receipt(None, None, None, None, unread="cut off"))
    api.listed = [StartedRebalance(None, NOW)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.unread == "cut off"  # still REBALANCE_ID_UNKNOWN, said as such
    assert not outcome.receipt.reconciled


def test_a_repeat_answered_with_what_the_lost_attempt_may_have_started_stays_flagged() -> None:
    # The lost attempt leaves at NOW and Glider submits a rebalance 0.3 s later; the repeat
    # leaves 10 s on and Glider answers it with that rebalance, still running. Which attempt
    # started it cannot be proven: the repeat stays flagged, never called "joined".
    clock = FakeClock(NOW + 10.0, readings=[NOW, NOW + 0.5, NOW + 10.0])
    answer = Receipt("op_1", None, None, None, submitted_at=NOW + 0.3)
    api = FakeApi(LOST, answer)

    api.list_error = SERVER_ERROR  # the look proves nothing: the answer alone decides
    outcome = run(api, clock=clock)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.joined
    assert outcome.maybe_delivered_attempts == 1


def test_a_glider_clock_behind_ours_does_not_make_a_fresh_rebalance_look_joined() -> None:
    # Glider's clock runs 10 s behind: a second rebalance it just started says it was submitted
    # 10 s before the repeat left. Only "before the delivery's first attempt, by more than
    # clocks can differ" proves a rebalance in flight was someone else's.
    clock = FakeClock(NOW + 20.0, readings=[NOW, NOW + 0.5, NOW + 20.0])
    fresh = Receipt("op_2", None, None, None, submitted_at=NOW + 20.0 - 10.0)
    api = FakeApi(LOST, fresh)

    api.list_error = SERVER_ERROR  # the look proves nothing: the answer alone decides
    outcome = run(api, clock=clock)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.joined
    assert outcome.maybe_delivered_attempts == 1


def test_a_rebalance_in_flight_since_well_before_the_first_attempt_was_joined() -> None:
    before = NOW - JOINED_BEFORE_SECONDS - 1
    api = FakeApi(LOST, Receipt("op_0", None, None, None, submitted_at=before))

    api.list_error = SERVER_ERROR  # the look proves nothing: the answer alone decides
    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.joined
    assert outcome.maybe_delivered_attempts == 0  # proven: nothing was started by this delivery


def test_a_quick_repeat_cannot_prove_it_joined_and_stays_flagged() -> None:
    # Within the clock-skew allowance a submission before the repeat proves nothing.
    clock = FakeClock(NOW + 2.0, readings=[NOW, NOW + 0.5, NOW + 2.0])
    answer = Receipt("op_1", None, None, None, submitted_at=NOW + 0.3)
    api = FakeApi(LOST, answer)

    api.list_error = SERVER_ERROR  # the look proves nothing: the answer alone decides
    outcome = run(api, clock=clock)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.joined
    assert outcome.maybe_delivered_attempts == 1


def test_the_latest_rebalance_after_the_window_closes_it_where_only_the_latest_is_shown() -> None:
    # v2 shows only the latest: a rebalance since the lost attempt (here, long after it) may
    # hide the lost attempt's own; a rebalance has run since, so nothing is sent again.
    api = FakeApi(LOST)
    api.listed = [StartedRebalance(None, NOW + 3600, latest_only=True)]

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.reconciled
    assert len(api.calls) == 1


def test_a_full_list_only_matches_inside_the_window() -> None:
    api = FakeApi(LOST, RECEIPT)
    api.listed = [StartedRebalance("rebal_later", NOW + 3600)]  # v1: someone else's, later

    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.reconciled
    assert len(api.calls) == 2


def test_a_repeat_answered_with_a_new_submission_stays_flagged() -> None:
    fresh = Receipt("op_2", None, None, None, submitted_at=NOW)
    api = FakeApi(LOST, fresh)

    api.list_error = SERVER_ERROR  # the look proves nothing: the answer alone decides
    outcome = run(api)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.joined
    assert outcome.maybe_delivered_attempts == 1


def test_a_list_cut_off_before_the_attempt_proves_nothing_and_the_repeat_is_flagged() -> None:
    telemetry = RecordingTelemetry()
    api = FakeApi(LOST, RECEIPT)
    api.listed = [listed(NOW + 3600 + n, f"rebal_later_{n}") for n in range(10)]
    api.listed_complete = False  # every listed one is later; older ones were cut off

    outcome = run(api, telemetry=telemetry)

    assert isinstance(outcome, Triggered)
    assert not outcome.receipt.reconciled
    assert outcome.maybe_delivered_attempts == 1  # flagged: never "nothing started"
    [failure] = telemetry.named("reconcile_failed")
    assert failure["reason"] == "RECENT_LIST_CUT_OFF"


def test_every_lookup_waits_for_a_slot_like_the_triggers() -> None:
    pacing = FakePacing()
    api = FakeApi(LOST, RECEIPT)

    run(api, pacing=pacing)

    # Two POSTs and the look before the second: three slots.
    assert (len(api.calls), api.list_calls, len(pacing.budgets)) == (2, 1, 3)


def test_the_lookup_of_a_cut_off_answers_id_waits_for_a_slot_too() -> None:
    cut_off = Receipt(None, None, "req_1", "corr_1", unread="HTTP 200, but the body was cut off")
    pacing = FakePacing()
    api = FakeApi(cut_off)
    api.listed = [listed(NOW + 0.1, "rebal_found")]

    outcome = run(api, pacing=pacing)

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id == "rebal_found"
    assert (len(api.calls), api.list_calls, len(pacing.budgets)) == (1, 1, 2)


def test_without_a_slot_for_the_look_nothing_is_sent_again() -> None:
    api = FakeApi(LOST, RECEIPT)

    outcome = run(api, pacing=FakePacing(slots=1))  # the first attempt's

    assert isinstance(outcome, Failed)
    assert outcome.error is LOST
    assert (len(api.calls), api.list_calls) == (1, 0)


def test_without_a_slot_for_the_look_a_cut_off_answers_id_stays_unknown() -> None:
    cut_off = Receipt(None, None, "req_1", "corr_1", unread="HTTP 200, but the body was cut off")
    api = FakeApi(cut_off)
    api.listed = [listed(NOW + 0.1, "rebal_found")]

    outcome = run(api, pacing=FakePacing(slots=1))

    assert isinstance(outcome, Triggered)
    assert outcome.receipt.rebalance_id is None
    assert api.list_calls == 0


def test_a_systemic_answer_to_the_look_halts_instead_of_sending_again() -> None:
    # A router's 404 on the status path (the route does not exist), say: every other call would
    # meet it too. Sending again unlooked could start a second rebalance.
    api = FakeApi(LOST, RECEIPT)
    api.list_error = refused("ROUTE_NOT_FOUND", FailureClass.SYSTEMIC)

    outcome = run(api)

    assert isinstance(outcome, Failed)
    assert outcome.failure_class is FailureClass.SYSTEMIC
    assert outcome.error.reason == "ROUTE_NOT_FOUND"
    assert len(api.calls) == 1  # the lost one only
    assert len(outcome.uncertain) == 1  # kept for the redelivery or the letter's replay
