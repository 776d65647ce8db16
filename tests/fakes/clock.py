"""A fake of the Clock port: time the test sets, waits it records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from tests.fakes.api import FakeDeadline

# A fixed wall-clock time (2023-11-14T22:13:20Z): readings never depend on when a test runs.
EPOCH: Final = 1_700_000_000.0


class FakeClock:
    """The wall clock reads `readings` in order, then `at`; the monotonic clock reads `elapsed`.
    Neither moves unless the test moves it: a sleep is recorded in `delays` (and spends a
    FakeDeadline's time, when given one), so that every reading is one the test chose."""

    def __init__(
        self,
        at: float = EPOCH,
        *,
        monotonic: float = 0.0,
        readings: Iterable[float] = (),
        deadline: FakeDeadline | None = None,
    ) -> None:
        self.at = at
        self.elapsed = monotonic
        self.delays: list[float] = []
        self._readings = iter(readings)
        self._deadline = deadline

    def now(self) -> float:
        return next(self._readings, self.at)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._deadline is not None:
            self._deadline.seconds -= seconds
