"""A fake of the Pacing port: every request gets a slot, or only the first `slots` do; it
records the time budget each request was asked to keep to."""

from __future__ import annotations


class FakePacing:
    def __init__(self, slots: int | None = None) -> None:
        self.slots = slots  # None: no limit
        self.budgets: list[float] = []  # one per request that asked for a slot

    def acquire(self, *, budget_seconds: float = float("inf")) -> bool:
        self.budgets.append(budget_seconds)
        if self.slots is None:
            return True
        if self.slots <= 0:
            return False
        self.slots -= 1
        return True
