"""tools/next_run.py: the next run of a Scheduler expression, in the schedule's own time zone,
as `glider-trigger status` shows it (daylight saving changes in Europe/Zurich included)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tools.next_run import Unsupported, Window, next_run

ZURICH = ZoneInfo("Europe/Zurich")


def wall(expression: str, now: datetime, zone: str = "UTC", window: Window | None = None) -> str:
    found = next_run(expression, time_zone=zone, now=now, window=window)
    return "none" if found is None else found.strftime("%Y-%m-%d %H:%M %Z")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


NOW = utc(2026, 12, 7, 18, 30)  # a Monday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("cron(0 9 * * ? *)", "2026-12-08 09:00 UTC"),
        ("cron(45 18 * * ? *)", "2026-12-07 18:45 UTC"),
        ("cron(30 18 * * ? *)", "2026-12-08 18:30 UTC"),  # now itself is not next
        ("cron(*/15 * * * ? *)", "2026-12-07 18:45 UTC"),
        ("cron(5/20 * * * ? *)", "2026-12-07 18:45 UTC"),
        ("cron(0 8-10/2 * * ? *)", "2026-12-08 08:00 UTC"),
        ("cron(0 9 ? * MON-FRI *)", "2026-12-08 09:00 UTC"),
        ("cron(0 9 ? * FRI-MON *)", "2026-12-11 09:00 UTC"),  # a range that wraps
        ("cron(0 9 ? * 1 *)", "2026-12-13 09:00 UTC"),  # 1 is Sunday
        ("cron(0 9 ? * SAT,SUN *)", "2026-12-12 09:00 UTC"),
        ("cron(0 9 1,15 * ? *)", "2026-12-15 09:00 UTC"),
        ("cron(0 9 L * ? *)", "2026-12-31 09:00 UTC"),
        ("cron(0 9 L-2 * ? *)", "2026-12-29 09:00 UTC"),
        ("cron(0 9 LW JAN ? *)", "2027-01-29 09:00 UTC"),  # 31 Jan 2027 is a Sunday
        ("cron(0 9 9W JAN ? *)", "2027-01-08 09:00 UTC"),  # 9 Jan 2027 is a Saturday
        ("cron(0 9 1W JAN ? *)", "2027-01-01 09:00 UTC"),  # a Friday
        ("cron(0 9 5W DEC ? 2027)", "2027-12-06 09:00 UTC"),  # the 5th is a Sunday
        ("cron(0 9 ? * 3#2 *)", "2026-12-08 09:00 UTC"),  # second Tuesday
        ("cron(0 9 ? * MON#1 *)", "2027-01-04 09:00 UTC"),
        ("cron(0 9 ? * 6L *)", "2026-12-25 09:00 UTC"),  # last Friday
        ("cron(0 9 ? * L *)", "2026-12-12 09:00 UTC"),  # L alone: Saturday
        ("cron(0 0 29 FEB ? *)", "2028-02-29 00:00 UTC"),
        ("cron(0 9 1 1 ? 2030)", "2030-01-01 09:00 UTC"),
        ("cron(0 9 1 1 ? 2020-2025)", "none"),  # only past years
        ("at(2026-12-24T18:00:00)", "2026-12-24 18:00 UTC"),
        ("at(2026-01-01T00:00:00)", "none"),
    ],
)
def test_next_run_in_utc(expression: str, expected: str) -> None:
    assert wall(expression, NOW) == expected


def test_cron_runs_at_its_wall_time_in_its_zone_across_the_spring_change() -> None:
    # Zurich moves from CET (+1) to CEST (+2) on Sunday 29 March 2026 at 02:00.
    before = utc(2026, 3, 28, 12, 0)
    assert wall("cron(0 9 * * ? *)", before, "Europe/Zurich") == "2026-03-29 09:00 CEST"
    found = next_run("cron(0 9 * * ? *)", time_zone="Europe/Zurich", now=before)
    assert found is not None
    assert found.astimezone(UTC).hour == 7


def test_a_wall_time_the_spring_change_skips_does_not_run_that_day() -> None:
    # 02:30 does not exist in Zurich on 29 March 2026: Scheduler skips it.
    night = utc(2026, 3, 28, 12, 0)
    assert wall("cron(30 2 * * ? *)", night, "Europe/Zurich") == "2026-03-30 02:30 CEST"


def test_a_wall_time_the_autumn_change_repeats_runs_once() -> None:
    # Zurich moves back from CEST to CET on Sunday 25 October 2026 at 03:00: 02:30 happens twice.
    first = next_run("cron(30 2 * * ? *)", time_zone="Europe/Zurich", now=utc(2026, 10, 24, 12))
    assert first is not None
    assert first.astimezone(UTC) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first
    again = next_run("cron(30 2 * * ? *)", time_zone="Europe/Zurich", now=first)
    assert wall("cron(30 2 * * ? *)", first, "Europe/Zurich") == "2026-10-26 02:30 CET"
    assert again is not None
    assert again.date().day == 26


def test_at_is_read_in_the_schedules_zone() -> None:
    found = next_run("at(2026-12-24T18:00:00)", time_zone="Europe/Zurich", now=NOW)
    assert found is not None
    assert found.astimezone(UTC) == utc(2026, 12, 24, 17, 0)


def test_rate_counts_from_the_schedules_creation() -> None:
    created = utc(2026, 12, 7, 10, 7)
    window = Window(created=created)
    assert wall("rate(1 hour)", NOW, window=window) == "2026-12-07 19:07 UTC"
    assert wall("rate(5 minutes)", NOW, window=window) == "2026-12-07 18:32 UTC"
    assert wall("rate(2 days)", NOW, window=window) == "2026-12-09 10:07 UTC"
    # shown in the schedule's zone, the same instant
    assert wall("rate(1 hour)", NOW, "Europe/Zurich", window) == "2026-12-07 20:07 CET"


def test_rate_starts_at_its_start_date_when_that_is_later() -> None:
    window = Window(start=utc(2027, 1, 1, 6), created=utc(2026, 12, 1))
    assert wall("rate(1 day)", NOW, window=window) == "2027-01-01 06:00 UTC"


def test_a_schedule_past_its_end_date_runs_no_more() -> None:
    window = Window(end=utc(2026, 12, 7, 23, 0))
    assert wall("cron(0 9 * * ? *)", NOW, window=window) == "none"
    assert wall("cron(0 22 * * ? *)", NOW, window=window) == "2026-12-07 22:00 UTC"


def test_a_cron_waits_for_its_start_date() -> None:
    window = Window(start=utc(2027, 3, 1, 9, 0))
    assert wall("cron(0 9 * * ? *)", NOW, window=window) == "2027-03-01 09:00 UTC"


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 9 * * * *)",  # no ? in either day field
        "cron(0 9 ? * ? *)",
        "cron(0 9 * *)",
        "cron(61 9 * * ? *)",
        "cron(0 9 L/2 * ? *)",
        "rate(1 hour)",  # its start is unknown
        "every day",
    ],
)
def test_what_it_cannot_place_is_unsupported(expression: str) -> None:
    with pytest.raises(Unsupported):
        next_run(expression, time_zone="UTC", now=NOW)


def test_an_unknown_zone_is_unsupported() -> None:
    with pytest.raises(Unsupported, match="Mars/Olympus"):
        next_run("cron(0 9 * * ? *)", time_zone="Mars/Olympus", now=NOW)
