"""A work-queue message's fate from its portfolio's outcome (domain/fate.py), every branch:
what leaves the queue, what is delivered again (and no sooner than when), what is dead-lettered
here and what is deferred. A pure function: no fake is needed, only outcomes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from glider_trigger.domain.batch import SETTLED
from glider_trigger.domain.errors import (
    Certainty,
    CircuitOpenError,
    DuplicateInProgressError,
    FailureClass,
    TriggerError,
    classify,
)
from glider_trigger.domain.fate import Fate, decide
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    Next,
    Outcome,
    Receipt,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from tests.fakes.api import refused

REQUEST = TriggerRequest("p1", False, InputSource(SourceKind.SQS, "m-1", {}, "sqs:m-1"))
RECEIPT = Receipt("rebal_1", "sched_1", "req_1", "corr_1")
NOT_FOUND = refused("NOT_FOUND", FailureClass.PERMANENT)
UNEXPECTED_2XX = refused(
    "UNEXPECTED_RESPONSE", FailureClass.PERMANENT, certainty=Certainty.ACTED_UNREADABLE
)
DOWN = refused("SERVER_ERROR", FailureClass.TRANSIENT)
FORBIDDEN = refused("FORBIDDEN", FailureClass.SYSTEMIC)
WAITED = 8.0  # the longest Retry-After the invocation waits out itself (RETRY_MAX_DELAY_SECONDS)


def waits_for(seconds: float) -> bool:
    return seconds <= WAITED


def failed(error: TriggerError, *, remembered: bool = False) -> Failed:
    return Failed(
        REQUEST, error, classify(error), attempts=0 if remembered else 1, remembered=remembered
    )


def fate(
    outcome: Outcome, *, last_receive: bool = False, waits: Callable[[float], bool] = waits_for
) -> Fate:
    return decide(outcome, last_receive=last_receive, waits_for=waits)


# --- triggered ---------------------------------------------------------------------------


@pytest.mark.parametrize("already", [False, True])
@pytest.mark.parametrize("last_receive", [False, True])
def test_a_triggered_portfolio_settles_its_message_and_nothing_else(
    already: bool, last_receive: bool
) -> None:
    outcome = Triggered(REQUEST, RECEIPT, attempts=0 if already else 1, already_triggered=already)

    decided = fate(outcome, last_receive=last_receive)

    assert decided.settlement == SETTLED
    assert (decided.dead_letter, decided.defer) == (False, False)


# --- permanent ---------------------------------------------------------------------------


@pytest.mark.parametrize("last_receive", [False, True])
def test_a_permanent_failure_is_dead_lettered_and_settled_on_any_receive(
    last_receive: bool,
) -> None:
    decided = fate(failed(NOT_FOUND), last_receive=last_receive)

    assert decided == Fate(Next.DEAD_LETTERED, SETTLED, dead_letter=True)


@pytest.mark.parametrize("last_receive", [False, True])
def test_a_remembered_failure_is_settled_and_logged_as_lettered_before(last_receive: bool) -> None:
    # An earlier delivery's 2xx that was no success: its letter goes through the guard's
    # once-per-transport record, and its log line does not claim a new letter.
    decided = fate(failed(UNEXPECTED_2XX, remembered=True), last_receive=last_receive)

    assert decided == Fate(Next.NOTHING_DEAD_LETTERED_BEFORE, SETTLED, dead_letter=True)


def test_a_settled_failure_seen_first_is_dead_lettered_as_new() -> None:
    assert fate(failed(UNEXPECTED_2XX)).action is Next.DEAD_LETTERED


# --- transient and systemic: delivered again ---------------------------------------------


@pytest.mark.parametrize("error", [DOWN, FORBIDDEN, CircuitOpenError("the API looks down")])
def test_a_failure_that_may_pass_is_delivered_again_without_a_letter(error: TriggerError) -> None:
    decided = fate(failed(error))

    assert decided.action is Next.RETRY
    assert decided.settlement.redeliver is True
    assert decided.settlement.not_before_seconds is None  # the queue's own visibility timeout
    assert (decided.dead_letter, decided.defer) == (False, False)


def test_a_retry_after_the_invocation_waited_out_asks_for_no_later_redelivery() -> None:
    slow_down = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=WAITED)

    decided = fate(failed(slow_down))

    assert decided.settlement.redeliver is True
    assert decided.settlement.not_before_seconds is None


def test_a_retry_after_longer_than_the_invocation_waits_is_the_earliest_redelivery() -> None:
    slow_down = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=WAITED + 1)

    decided = fate(failed(slow_down))

    assert decided.settlement.redeliver is True
    assert decided.settlement.not_before_seconds == WAITED + 1


def test_whether_a_retry_after_was_waited_is_the_invocations_policy_not_a_constant() -> None:
    slow_down = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=30)

    waited = fate(failed(slow_down), waits=lambda seconds: seconds <= 60)
    not_waited = fate(failed(slow_down), waits=lambda seconds: seconds <= 10)

    assert waited.settlement.not_before_seconds is None
    assert not_waited.settlement.not_before_seconds == 30


# --- the last receive ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [DOWN, FORBIDDEN, refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=600)],
)
def test_on_the_last_receive_what_still_fails_is_dead_lettered_here_and_settled(
    error: TriggerError,
) -> None:
    # Not left to the redrive: its replay would be a new message, a new delivery.
    decided = fate(failed(error), last_receive=True)

    assert decided == Fate(Next.DEAD_LETTERED_LAST_RECEIVE, SETTLED, dead_letter=True)


def test_held_elsewhere_before_the_last_receive_is_delivered_again() -> None:
    held = failed(DuplicateInProgressError("another invocation holds it"))

    decided = fate(held)

    assert decided.action is Next.RETRY
    assert decided.settlement.redeliver is True
    assert (decided.dead_letter, decided.defer) == (False, False)


def test_held_elsewhere_on_the_last_receive_is_deferred_never_dead_lettered() -> None:
    # A letter's replay would be a second trigger of what the holder may be sending now.
    held = failed(DuplicateInProgressError("another invocation holds it"))

    decided = fate(held, last_receive=True)

    assert decided == Fate(Next.DEFERRED, SETTLED, defer=True)


# --- every fate is one of them -----------------------------------------------------------

OUTCOMES: list[Outcome] = [
    Triggered(REQUEST, RECEIPT, attempts=1),
    Triggered(REQUEST, RECEIPT, attempts=0, already_triggered=True),
    failed(NOT_FOUND),
    failed(UNEXPECTED_2XX),
    failed(UNEXPECTED_2XX, remembered=True),
    failed(DOWN),
    failed(FORBIDDEN),
    failed(refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=600)),
    failed(DuplicateInProgressError("held")),
]


@pytest.mark.parametrize(
    ("outcome", "last_receive"), list(itertools.product(OUTCOMES, [False, True]))
)
def test_a_message_is_either_kept_or_accounted_for_never_both_nor_neither(
    outcome: Outcome, last_receive: bool
) -> None:
    decided = fate(outcome, last_receive=last_receive)

    kept = decided.settlement.redeliver
    # Never lost: a message that leaves the queue was triggered, lettered or deferred.
    if not kept:
        assert isinstance(outcome, Triggered) or decided.dead_letter or decided.defer
    # Never twice: what comes back is neither lettered nor deferred as well.
    if kept:
        assert (decided.dead_letter, decided.defer) == (False, False)
    assert not (decided.dead_letter and decided.defer)
    # Never redelivered after its last receive: the redrive would replay it as a new delivery.
    if last_receive:
        assert not kept
    # Only a redelivery waits for a Retry-After.
    if decided.settlement.not_before_seconds is not None:
        assert kept
