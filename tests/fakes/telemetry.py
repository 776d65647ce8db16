"""A Telemetry that records what the domain reported, in order, as (event, details)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from glider_trigger.domain.errors import TriggerError
from glider_trigger.domain.models import Failed, FollowUp, InputSource, Next, Outcome, kind_of
from glider_trigger.domain.ports import FailedTriggerLetter, OutcomeReport


class RecordingTelemetry:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def named(self, event: str) -> list[dict[str, Any]]:
        return [details for name, details in self.events if name == event]

    def _add(self, event: str, **details: Any) -> None:
        self.events.append((event, details))

    def received(self, count: int) -> None:
        self._add("received", count=count)

    def outcome(self, outcome: Outcome, *, action: Next) -> None:
        self._add(
            "outcome",
            portfolio_id=outcome.request.portfolio_id,
            kind=kind_of(outcome),
            action=action,
            reason=outcome.error.reason if isinstance(outcome, Failed) else None,
        )

    def rejected(self, portfolio_id: object, error: TriggerError, source: InputSource) -> None:
        self._add("rejected", portfolio_id=portfolio_id, reason=error.reason)

    def unparsable(self, error: TriggerError, source: InputSource) -> None:
        self._add("unparsable", reason=error.reason)

    def queued(self, count: int, queue_url: str, source: InputSource) -> None:
        self._add("queued", count=count, queue_url=queue_url, dedupe_key=source.dedupe_key)

    def deferred(self, count: int, delay_seconds: int, queue_url: str) -> None:
        self._add("deferred", count=count, delay_seconds=delay_seconds)

    def dead_lettered(self, count: int) -> None:
        self._add("dead_lettered", count=count)

    def fan_out_failed(self, queue_url: str, messages: int) -> None:
        self._add("fan_out_failed", messages=messages)

    def deferral_failed(self, queue_url: str, messages: int) -> None:
        self._add("deferral_failed", messages=messages)

    def dead_letter_write_failed(self, queue_url: str, messages: int) -> None:
        self._add("dead_letter_write_failed", messages=messages)

    def unexpected_error(self, portfolio_id: str) -> None:
        self._add("unexpected_error", portfolio_id=portfolio_id)

    def postponed(self, delivery_id: str, visibility_timeout_seconds: int) -> None:
        self._add("postponed", delivery_id=delivery_id, seconds=visibility_timeout_seconds)

    def postpone_failed(self, delivery_id: str, retry_after_seconds: float) -> None:
        self._add("postpone_failed", delivery_id=delivery_id)

    def record_failed(self, delivery_id: str) -> None:
        self._add("record_failed", delivery_id=delivery_id)

    def rebalance_outcome(self, report: OutcomeReport) -> None:
        self._add(
            "rebalance_outcome",
            rebalance_id=report.follow_up.rebalance_id,
            outcome=report.outcome,
            reason=report.reason,
        )

    def event_not_put(self, report: OutcomeReport) -> None:
        self._add("event_not_put", rebalance_id=report.follow_up.rebalance_id)

    def letter_events_not_put(self, letters: Sequence[FailedTriggerLetter]) -> None:
        self._add("letter_events_not_put", portfolio_ids=[w.portfolio_id for w in letters])

    def looked(self, follow_up: FollowUp) -> None:
        self._add("looked", rebalance_id=follow_up.rebalance_id, number=follow_up.number)

    def still_running(self, follow_up: FollowUp, status: str | None, next_in: int) -> None:
        self._add("still_running", rebalance_id=follow_up.rebalance_id, next_in=next_in)

    def awaiting_user(self, follow_up: FollowUp) -> None:
        self._add("awaiting_user", rebalance_id=follow_up.rebalance_id)

    def state_unreadable(self, follow_up: FollowUp, error: TriggerError) -> None:
        self._add("state_unreadable", rebalance_id=follow_up.rebalance_id, reason=error.reason)

    def follow_up_not_sent(self, queue_url: str, messages: int, *, again: bool = False) -> None:
        self._add("follow_up_not_sent", messages=messages, again=again)

    def reconcile_failed(self, portfolio_id: str, error: TriggerError) -> None:
        self._add("reconcile_failed", portfolio_id=portfolio_id, reason=error.reason)

    def reconcile_forbidden(self, error: TriggerError) -> None:
        self._add("reconcile_forbidden", reason=error.reason)
