"""An in-memory OutcomeEvents: keeps the reports it was given; can refuse the next ones."""

from __future__ import annotations

from collections.abc import Sequence

from glider_trigger.domain.errors import OutcomeEventError
from glider_trigger.domain.ports import FailedTriggerLetter, OutcomeReport


class InMemoryEvents:
    def __init__(self) -> None:
        self.published: list[OutcomeReport] = []
        self.letters: list[FailedTriggerLetter] = []
        self.refuse_next = 0

    def publish(self, report: OutcomeReport) -> None:
        if self.refuse_next:
            self.refuse_next -= 1
            raise OutcomeEventError("the bus refused the event")
        self.published.append(report)

    def trigger_failed(self, letters: Sequence[FailedTriggerLetter]) -> None:
        if self.refuse_next:
            self.refuse_next -= 1
            raise OutcomeEventError("the bus refused the events")
        self.letters.extend(letters)
