"""When an EventBridge Scheduler expression next runs, in the schedule's own time zone (Scheduler
reports no next run time itself).

    next_run("cron(0 9 ? * MON-FRI *)", time_zone="Europe/Zurich", now=now)

Supported, as Scheduler documents them:
- rate(N minute[s]|hour[s]|day[s]): every N units from the schedule's start (its StartDate, else
  its CreationDate: Scheduler runs a rate schedule first when it is created, then every period);
- at(yyyy-mm-ddThh:mm:ss): once, at that wall time in the schedule's zone;
- cron(minutes hours day-of-month month day-of-week year): `*`, `?`, lists, ranges (wrapping ones
  too, e.g. FRI-MON), steps (`*/15`, `5/10`, `1-20/5`), month names JAN-DEC, day names SUN-SAT
  (1 = SUN ... 7 = SAT), in day-of-month `L` (last day), `L-N` (N days before it), `NW` (the
  weekday nearest day N, within the month) and `LW` (the last weekday); in day-of-week `L`
  (Saturday), `NL` (the month's last day N) and `N#K` (its K-th day N).

Daylight saving time, as Scheduler documents it: a wall time the spring change skips does not
run; one the autumn change repeats runs once (its first occurrence).

Anything else raises Unsupported (status shows "?"): e.g. `?` in both day fields, a step on L,
a cron that matches nothing before 2199.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.schedule_spec import AT, CRON, RATE

MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # Scheduler's 1 ... 7
LAST_YEAR: Final = 2199  # the last year Scheduler's cron accepts
UNIT_SECONDS: Final = {"minute": 60, "hour": 3600, "day": 86400}

DayTest = Callable[[date], bool]


class Unsupported(ValueError):
    """An expression this evaluator cannot place in time; the message says what."""


@dataclass(frozen=True)
class Window:
    """What Scheduler reports besides the expression that bounds its runs."""

    start: datetime | None = None  # StartDate: no run before it
    end: datetime | None = None  # EndDate: no run after it
    created: datetime | None = None  # CreationDate: a rate schedule's first run


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise Unsupported(f"unknown time zone {name!r}") from None


def next_run(
    expression: str, *, time_zone: str | None, now: datetime, window: Window | None = None
) -> datetime | None:
    """The first run strictly after `now`, in the schedule's zone; None when it runs no more
    (an at() in the past, past its EndDate)."""
    zone = zone_of(time_zone)
    window = window or Window()
    after = max(now, window.start - timedelta(microseconds=1)) if window.start else now
    text = expression.strip()
    found: datetime | None
    if match := RATE.fullmatch(text):
        found = _rate(int(match.group(1)), match.group(2).rstrip("s"), after, window)
    elif match := AT.fullmatch(text):
        found = _at(match.group(1), zone, after)
    elif match := CRON.fullmatch(text):
        found = Cron.parse(match.group(1)).after(after, zone)
    else:
        raise Unsupported(f"not a rate(), cron() or at() expression: {expression!r}")
    if found is None or (window.end is not None and found > window.end):
        return None
    return found.astimezone(zone)


def _rate(value: int, unit: str, after: datetime, window: Window) -> datetime:
    if value < 1:
        raise Unsupported("a rate of 0")
    anchor = window.start or window.created
    if anchor is None:
        raise Unsupported("a rate's runs count from the schedule's start, which is unknown")
    period = value * UNIT_SECONDS[unit]
    if anchor > after:
        return anchor
    periods = int((after - anchor).total_seconds() // period) + 1
    return anchor + timedelta(seconds=periods * period)


def _at(text: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    try:
        wall = datetime.fromisoformat(text)
    except ValueError:
        raise Unsupported(f"at(): not a date and time: {text!r}") from None
    when = wall.replace(tzinfo=zone)
    return when if _exists(when) and when > after else None


def _exists(local: datetime) -> bool:
    """False for a wall time the spring change skips (it does not survive a round trip)."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


# --- cron ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day: DayTest  # day-of-month or day-of-week, whichever is not ?
    months: frozenset[int]
    years: tuple[int, ...]

    @classmethod
    def parse(cls, body: str) -> Cron:
        fields = body.split()
        if len(fields) != 6:
            raise Unsupported(f"cron() takes 6 fields, got {len(fields)}")
        minute, hour, dom, month, dow, year = (field.upper() for field in fields)
        if (dom == "?") == (dow == "?"):
            raise Unsupported("cron(): exactly one of day-of-month and day-of-week must be ?")
        return cls(
            minutes=tuple(sorted(_values(minute, 0, 59))),
            hours=tuple(sorted(_values(hour, 0, 23))),
            day=_day_of_month(dom) if dow == "?" else _day_of_week(dow),
            months=frozenset(_values(month, 1, 12, MONTHS)),
            years=tuple(sorted(_values(year, 1970, LAST_YEAR))),
        )

    def after(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        start = after.astimezone(zone)
        for day in self._days(start.date()):
            for hour in self.hours:
                for minute in self.minutes:
                    # fold=0: of a wall time the autumn change repeats, the first occurrence.
                    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if _exists(local) and local.timestamp() > after.timestamp():
                        return local
        return None

    def _days(self, first: date) -> Iterator[date]:
        for year in self.years:
            if year < first.year:
                continue
            for month in sorted(self.months):
                if (year, month) < (first.year, first.month):
                    continue
                for number in range(1, calendar.monthrange(year, month)[1] + 1):
                    day = date(year, month, number)
                    if day >= first and self.day(day):
                        yield day


def _values(field: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    """The numbers a field's list of `*`, N, N-M and their /steps names."""
    found: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, 1, high - low + 1, "step") if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            left, right = base.split("-", 1)
            first, last = _name(left, low, high, names), _name(right, low, high, names)
        else:
            first = _name(base, low, high, names)
            last = high if step_text else first
        span = (last - first) % (high - low + 1)  # a range may wrap: FRI-MON
        found.update(
            low + (first - low + offset) % (high - low + 1) for offset in range(0, span + 1, step)
        )
    return found


def _name(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text in names:
        return names.index(text) + 1
    return _number(text, low, high, "value")


def _number(text: str, low: int, high: int, what: str) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise Unsupported(f"cron(): {what} {text!r} is not within {low}-{high}")
    return int(text)


def _day_of_month(field: str) -> DayTest:
    if field == "L":
        return lambda day: day.day == _last_day(day)
    if match := re.fullmatch(r"L-(\d+)", field):
        back = _number(match.group(1), 0, 30, "offset")
        return lambda day: day.day == _last_day(day) - back
    if field == "LW":
        return lambda day: day.day == _nearest_weekday(day, _last_day(day))
    if match := re.fullmatch(r"(\d+)W", field):
        wanted = _number(match.group(1), 1, 31, "day")
        return lambda day: day.day == _nearest_weekday(day, min(wanted, _last_day(day)))
    days = _values(field, 1, 31)
    return lambda day: day.day in days


def _day_of_week(field: str) -> DayTest:
    if field == "L":
        return lambda day: _aws_weekday(day) == DAYS.index("SAT") + 1
    if match := re.fullmatch(r"(\w+)L", field):
        wanted = _name(match.group(1), 1, 7, DAYS)
        return lambda day: _aws_weekday(day) == wanted and day.day + 7 > _last_day(day)
    if match := re.fullmatch(r"(\w+)#(\d)", field):
        wanted = _name(match.group(1), 1, 7, DAYS)
        nth = _number(match.group(2), 1, 5, "occurrence")
        return lambda day: _aws_weekday(day) == wanted and (day.day - 1) // 7 + 1 == nth
    days = _values(field, 1, 7, DAYS)
    return lambda day: _aws_weekday(day) in days


def _aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday (Python's Monday is 0)."""
    return (day.weekday() + 1) % 7 + 1


def _last_day(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _nearest_weekday(day: date, number: int) -> int:
    """The weekday nearest day `number` of day's month, never leaving the month."""
    target = day.replace(day=number)
    if target.weekday() < 5:
        return number
    last = _last_day(day)
    if target.weekday() == 5:  # Saturday: the Friday before, or the Monday after the 1st
        return number - 1 if number > 1 else number + 2
    return number + 1 if number < last else number - 2  # Sunday
