"""An in-memory TriggerGuard: remembers settled outcomes and completed actions by key, and can
hold keys "in progress" as another invocation would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from glider_trigger.domain.errors import DuplicateInProgressError, classify
from glider_trigger.domain.models import Failed, Outcome, Triggered, TriggerRequest


class InMemoryGuard:
    def __init__(self) -> None:
        self.settled: dict[str, Outcome] = {}
        self.held: set[str] = set()  # keys another invocation holds right now
        self.done: set[str] = set()  # `once` keys whose action completed

    def run(self, key: str, request: TriggerRequest, trigger: Callable[[], Outcome]) -> Outcome:
        if key in self.held:
            error = DuplicateInProgressError("another invocation is triggering this delivery")
            return Failed(request, error, classify(error), attempts=0)
        earlier = self.settled.get(key)
        if isinstance(earlier, Triggered):
            return replace(earlier, request=request, attempts=0, already_triggered=True)
        if isinstance(earlier, Failed):
            return replace(earlier, request=request, attempts=0, remembered=True)
        outcome = trigger()
        if outcome.settles_delivery:
            self.settled[key] = outcome
        return outcome

    def once(self, key: str, action: Callable[[], None]) -> None:
        if key in self.done:
            return
        action()
        self.done.add(key)
