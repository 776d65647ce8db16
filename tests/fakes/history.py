"""A History that keeps what the domain asked it to write, in order."""

from __future__ import annotations

from glider_trigger.domain.models import Outcome
from glider_trigger.domain.ports import OutcomeReport


class RecordingHistory:
    def __init__(self) -> None:
        self.triggers: list[Outcome] = []
        self.outcomes: list[OutcomeReport] = []

    def trigger(self, outcome: Outcome) -> None:
        self.triggers.append(outcome)

    def outcome(self, report: OutcomeReport) -> None:
        self.outcomes.append(report)
