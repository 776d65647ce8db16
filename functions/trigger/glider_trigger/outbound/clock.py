"""The Clock port on the machine's own clocks (the composition root wires it)."""

from __future__ import annotations

import time
from typing import Final


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Final = SystemClock()
