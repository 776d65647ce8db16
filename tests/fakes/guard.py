"""An in-memory TriggerGuard: remembers settled outcomes, the windows a released delivery left
unresolved (as the DynamoDB ledger does) and completed actions by key, and can hold keys "in
progress" as another invocation would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from glider_trigger.domain.errors import DuplicateInProgressError
from glider_trigger.domain.models import Failed, Outcome, Triggered, TriggerRequest, Window
from glider_trigger.domain.ports import Attempts


class RecordedAttempts:
    """The guard's record of attempts, counted: how many holders recorded sending."""

    def __init__(self) -> None:
        self.recorded = 0

    def sending(self) -> None:
        self.recorded += 1


class InMemoryGuard:
    def __init__(self) -> None:
        self.settled: dict[str, Outcome] = {}
        self.open: dict[str, tuple[Window, ...]] = {}  # released: what may have started
        self.held: set[str] = set()  # keys another invocation holds right now
        self.done: set[str] = set()  # `once` keys whose action completed
        self.sent: dict[str, int] = {}  # holders that recorded sending, per key

    def run(
        self,
        key: str,
        request: TriggerRequest,
        trigger: Callable[[TriggerRequest, Attempts], Outcome],
    ) -> Outcome:
        if key in self.held:
            error = DuplicateInProgressError("another invocation is triggering this delivery")
            return Failed.not_attempted(request, error)
        earlier = self.settled.get(key)
        if isinstance(earlier, Triggered):
            return replace(earlier, request=request, attempts=0, already_triggered=True)
        if isinstance(earlier, Failed):
            return replace(earlier, request=request, attempts=0, remembered=True)
        recorded = self.open.pop(key, ())
        held = replace(request, may_have_started=(*recorded, *request.may_have_started))
        sending = RecordedAttempts()
        outcome = trigger(held, sending)
        self.sent[key] = self.sent.get(key, 0) + sending.recorded
        if outcome.settles_delivery:
            self.settled[key] = outcome
        elif isinstance(outcome, Failed):
            self.open[key] = outcome.uncertain
        return outcome

    def once(self, key: str, action: Callable[[], None]) -> None:
        if key in self.done:
            return
        action()
        self.done.add(key)
