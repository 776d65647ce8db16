"""Glider's clock read from an answer's Date header (outbound/glider/http.py clock_offset): never
more correction than the answer proves, never off by more than its round trip and a second."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from glider_trigger.outbound.glider.http import clock_offset

SENT = 1_800_000_000.25  # our clock when the request left


def date_at(glider_epoch: float) -> str:
    """A Date header for this moment on Glider's clock (whole seconds, as HTTP has them)."""
    return formatdate(glider_epoch, usegmt=True)


@pytest.mark.parametrize(
    ("offset", "round_trip", "stamped"),
    [
        (-60.0, 0.2, 0.1),  # a fast answer, Glider a minute behind
        (-60.0, 2.5, 2.5),  # a loaded machine: stamped as it answered
        (60.0, 2.5, 0.0),  # ... or as the request arrived
        (1.0, 12.0, 12.0),  # a slow answer, Glider a second ahead: read from its middle, 7 s
        (-8.0, 9.0, 4.5),
    ],
)
def test_the_reading_is_never_further_off_than_the_round_trip_and_a_second(
    offset: float, round_trip: float, stamped: float
) -> None:
    answered = SENT + round_trip
    read = clock_offset(date_at(SENT + stamped + offset), SENT, answered)

    assert abs(read - offset) <= round_trip + 1
    assert abs(read) <= abs(offset) + 1  # never more correction than there is


def test_a_difference_the_answer_cannot_tell_from_none_is_not_applied() -> None:
    # Stamped 0.4 s into a 3 s round trip on a clock 1 s ahead: 0 is inside what it proves.
    assert clock_offset(date_at(SENT + 0.4 + 1.0), SENT, SENT + 3.0) == 0.0


def test_the_lost_answers_lookup_allowance_holds_on_a_slow_answer() -> None:
    # The reviewer's case: a 12 s answer stamped at its end, Glider 1 s ahead; read from the
    # middle it was 7.5 s, beyond the lookup's 5 s allowance.
    read = clock_offset(date_at(SENT + 12.0 + 1.0), SENT, SENT + 12.0)

    assert abs(read - 1.0) <= 1.0


def test_no_date_or_a_bad_one_is_no_correction() -> None:
    assert clock_offset(None, SENT, SENT + 1) == 0.0
    assert clock_offset("yesterday", SENT, SENT + 1) == 0.0
