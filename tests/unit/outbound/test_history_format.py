"""The history's record format (outbound/history.py): what a trigger and a final outcome become,
the index the template declares (the same as the one the local table is made with), and a
write that fails without failing anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from cfnlint.decode import cfn_yaml

from glider_trigger.domain.errors import FailureClass
from glider_trigger.domain.models import (
    Failed,
    FinalOutcome,
    FollowUp,
    InputSource,
    RebalanceState,
    Receipt,
    SourceKind,
    Triggered,
    TriggerRequest,
)
from glider_trigger.domain.ports import OutcomeReport
from glider_trigger.outbound import guard, history
from glider_trigger.outbound.history import DynamoDBHistory, HistoryEntry, Kind
from tests.fakes.api import refused

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
AT = 1_796_630_400.0  # 2026-12-07T08:00:00Z
REQUEST = TriggerRequest(
    "port_abc123",
    False,
    InputSource(SourceKind.SCHEDULE, dedupe_key="schedule:arn:aws:scheduler:x@2026-12-07T08:00Z"),
)


def test_a_trigger_is_written_with_its_source_rebalance_id_and_delivery() -> None:
    receipt = Receipt("rebal_1", "sched_1", "req_1", "corr_1")

    entry = history.of_trigger(Triggered(REQUEST, receipt, attempts=2), AT)

    assert entry == HistoryEntry(
        at=AT,
        portfolio_id="port_abc123",
        kind=Kind.TRIGGER,
        source="schedule",
        outcome="triggered",
        rebalance_id="rebal_1",
        detail="2 attempts",
        delivery_key="schedule:arn:aws:scheduler:x@2026-12-07T08:00Z",
    )


def test_a_failed_trigger_is_written_with_its_reason_and_what_was_said() -> None:
    error = refused("RATE_LIMITED", FailureClass.TRANSIENT, retry_after_seconds=60)

    entry = history.of_trigger(Failed(REQUEST, error, FailureClass.TRANSIENT, attempts=1), AT)

    assert (entry.outcome, entry.reason, entry.rebalance_id) == ("failed", "RATE_LIMITED", None)
    assert entry.detail == "the API answered RATE_LIMITED"


def test_an_accepted_trigger_whose_answer_was_cut_off_says_so() -> None:
    receipt = Receipt(None, None, None, None, unread="connection reset")

    entry = history.of_trigger(Triggered(REQUEST, receipt, attempts=1), AT)

    assert (entry.outcome, entry.reason) == ("triggered", "REBALANCE_ID_UNKNOWN")
    assert entry.detail == "Glider's answer was cut off (connection reset)"


def test_a_final_outcome_is_written_when_it_was_decided_with_the_rebalances_facts() -> None:
    follow_up = FollowUp("port_abc123", "rebal_1", False, "sqs:m-1", AT, 3)
    state = RebalanceState("failed", FinalOutcome.FAILED, started_at=AT, closed_at=AT + 95)
    report = OutcomeReport(follow_up, FinalOutcome.FAILED, state, "slippage", decided_at=AT + 99)

    entry = history.of_outcome(report, AT + 120)

    assert entry == HistoryEntry(
        at=AT + 99,
        portfolio_id="port_abc123",
        kind=Kind.OUTCOME,
        source="follow-up",
        outcome="failed",
        reason="slippage",
        rebalance_id="rebal_1",
        detail="status failed, took 95 s",
        delivery_key="sqs:m-1",
    )


def test_an_entry_as_json_names_its_time_in_utc() -> None:
    entry = HistoryEntry(AT + 0.25, "p1", Kind.OUTCOME, "follow-up", "completed")

    assert entry.as_json() == {
        "at": "2026-12-07T08:00:00.250Z",
        "portfolioId": "p1",
        "kind": "outcome",
        "source": "follow-up",
        "outcome": "completed",
        "reason": None,
        "rebalanceId": None,
        "detail": None,
        "deliveryKey": None,
    }
    json.dumps(entry.as_json())


def test_history_records_are_never_guard_records() -> None:
    record = history.record_id("p1", history.day_of(AT))

    assert record == "history#p1#2026-12-07"
    assert not record.startswith(guard.KEY_PREFIX)
    assert not guard.record_id("p1").startswith(f"{history.KEY_PREFIX}#")


def test_the_template_declares_the_index_the_history_is_read_by() -> None:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    table = loaded["Resources"]["IdempotencyTable"]["Properties"]

    assert table["GlobalSecondaryIndexes"] == list(history.GLOBAL_SECONDARY_INDEXES)
    for definition in history.ATTRIBUTE_DEFINITIONS:
        assert definition in table["AttributeDefinitions"]
    # The history expires by the guard's TTL attribute, as long as the guard remembers.
    assert table["TimeToLiveSpecification"]["AttributeName"] == guard.TTL_ATTRIBUTE
    # One index: CloudFormation adds one to an existing table per stack update.
    assert len(table["GlobalSecondaryIndexes"]) == 1


class Unreachable:
    def update_item(self, **_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.example")


def test_a_write_that_fails_is_reported_and_never_raised() -> None:
    not_written: list[tuple[HistoryEntry, str]] = []
    writer = DynamoDBHistory(
        "table",
        client=Unreachable,  # type: ignore[arg-type]
        keep_seconds=86400,
        on_not_written=lambda entry, error: not_written.append((entry, error)),
        clock=lambda: AT,
    )
    receipt = Receipt("rebal_1", None, None, None)

    writer.trigger(Triggered(REQUEST, receipt, attempts=1))

    [(entry, error)] = not_written
    assert (entry.portfolio_id, entry.outcome) == ("port_abc123", "triggered")
    assert error.startswith("EndpointConnectionError")


@pytest.mark.parametrize("text", ["24h", "7d", "30m"])
def test_days_cover_the_window_from_its_first_day_to_today(text: str) -> None:
    seconds = {"24h": 86400, "7d": 7 * 86400, "30m": 1800}[text]

    days = history._days(AT - seconds, AT)

    assert days[-1] == "2026-12-07"
    assert len(days) == (seconds + 8 * 3600) // 86400 + 1
