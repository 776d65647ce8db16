"""The deployed stack end to end: template.yaml as `sam deploy` creates it on MiniStack, driven only
through what it deployed (the schedule, the rule on its bus, the work queue, the DLQ, the outcome
bus) and the operator tools, never by calling the handler. What Glider received is read off the
emulator.

Every input is sent at the start (the `sent` fixture), so that the waits overlap: the schedule's
run, the 429's Retry-After and the first follow-up's 30 s delay run side by side, and the module
takes about as long as the slowest of them plus the deploy.

The deploy is tests/deployed/conftest.py's, shared with the other modules here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from local.fixtures.glider_emulator import Fault
from tests.deployed.conftest import (
    OUTCOME_BUS,
    SCHEDULED,
    UPSTREAM_BUS,
    UPSTREAM_SOURCE,
    Deployed,
    wait_for,
)
from tools import dlq

DETAIL_TYPE = "PortfolioRebalanceRequested"  # the template's default UpstreamDetailType
RULE = "port_rule1"
WRONG_SOURCE = "port_wrongsource1"  # the right detail-type from another source
OTHER_BUS = "port_otherbus1"  # the right source and detail-type on another bus
GOOD = ("port_sqs1", "port_sqs2")
UNKNOWN = "port_unknown1"  # Glider answers 404 API_200
DUPLICATE = "port_dup1"
BUSY, BUSY_MATE = "port_busy1", "port_busymate1"
RETRY_AFTER = 10  # longer than the function waits inline (8 s): SQS redelivers the message
REDRIVEN = "port_redrive1"  # first without a schedule on Glider (400 API_002), then with one
# Deadlines: generous against this machine's load, never waited out when things work.
TRIGGER_SECONDS = 60
SCHEDULE_SECONDS = 90
OUTCOME_SECONDS = 90


@dataclass
class Sent:
    started: float
    duplicate_body: str


@pytest.fixture(scope="module")
def sent(deployed: Deployed) -> Sent:
    emulator = deployed.emulator
    for portfolio in (
        *SCHEDULED,
        RULE,
        WRONG_SOURCE,
        OTHER_BUS,
        *GOOD,
        DUPLICATE,
        BUSY,
        BUSY_MATE,
    ):
        emulator.add_portfolio(portfolio)  # known to Glider: only the wiring keeps them apart
    emulator.add_portfolio(REDRIVEN, has_schedule=False)
    emulator.script(BUSY, Fault.rate_limited(retry_after=RETRY_AFTER))

    def upstream(portfolio: str, *, source: str = UPSTREAM_SOURCE, bus: str = UPSTREAM_BUS) -> Any:
        detail = json.dumps({"portfolioIds": [portfolio]})
        return {"Source": source, "DetailType": DETAIL_TYPE, "Detail": detail, "EventBusName": bus}

    started = time.monotonic()
    events = deployed.client("events")
    put = events.put_events(
        Entries=[
            upstream(WRONG_SOURCE, source="com.example.someone-else"),
            upstream(OTHER_BUS, bus="default"),
            upstream(RULE),
        ]
    )
    assert put["FailedEntryCount"] == 0
    work = deployed.outputs["WorkQueueUrl"]
    sqs = deployed.client("sqs")
    for body in (
        {"portfolioIds": [*GOOD, UNKNOWN]},
        {"portfolioIds": [BUSY, BUSY_MATE]},
        {"portfolioId": REDRIVEN},
    ):
        sqs.send_message(QueueUrl=work, MessageBody=json.dumps(body))
    duplicate = json.dumps({"portfolioId": DUPLICATE, "idempotencyKey": "deployed-test-dup-1"})
    sqs.send_message(QueueUrl=work, MessageBody=duplicate)
    return Sent(started=started, duplicate_body=duplicate)


def triggered(deployed: Deployed, portfolio: str) -> int:
    """Rebalances Glider started for the portfolio."""
    return len(deployed.emulator.rebalances_for(portfolio))


def letters(deployed: Deployed) -> list[dlq.Row]:
    """The DLQ as `make dlq ARGS=list` reads it: nothing consumed."""
    scan = dlq.Scan(deployed.client("sqs"), deployed.outputs["DeadLetterQueueUrl"], hold_seconds=2)
    now = time.time()
    try:
        return [dlq.to_row(message, now=now) for message in scan.messages()]
    finally:
        scan.release()


def work_queue_is_empty(deployed: Deployed) -> bool:
    attributes = deployed.client("sqs").get_queue_attributes(
        QueueUrl=deployed.outputs["WorkQueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


def test_the_deploy_took_the_users_parameters(deployed: Deployed) -> None:
    assert deployed.parameters["GliderApiBaseUrl"] == deployed.emulator.base_url
    assert deployed.parameters["EventBusName"] == UPSTREAM_BUS
    assert deployed.parameters["OutcomeEventBusName"] == OUTCOME_BUS
    # Each MiniStack workaround that was needed is said (local/aws/deploy.py).
    assert any("MaximumConcurrency" in line for line in deployed.workarounds)


def test_an_upstream_event_with_the_configured_source_on_the_configured_bus_triggers(
    deployed: Deployed, sent: Sent
) -> None:
    wait_for(
        lambda: triggered(deployed, RULE),
        seconds=TRIGGER_SECONDS,
        what=f"{RULE}, put on {UPSTREAM_BUS} with source {UPSTREAM_SOURCE}, triggered",
    )
    assert triggered(deployed, RULE) == 1


def test_good_ids_are_triggered_once_and_an_unknown_one_dead_lettered_with_its_reason(
    deployed: Deployed, sent: Sent
) -> None:
    [letter] = wait_for(
        lambda: [row for row in letters(deployed) if row.portfolio == UNKNOWN],
        seconds=TRIGGER_SECONDS,
        what=f"the letter for {UNKNOWN} in the DLQ",
    )

    assert letter.reason == "NOT_FOUND"
    assert letter.http_status == "404"
    assert letter.api_error_code == "API_200"
    assert [triggered(deployed, portfolio) for portfolio in GOOD] == [1, 1]
    assert triggered(deployed, UNKNOWN) == 0


def test_a_429_with_retry_after_is_redelivered_and_triggered_afterwards(
    deployed: Deployed, sent: Sent
) -> None:
    wait_for(
        lambda: triggered(deployed, BUSY),
        seconds=TRIGGER_SECONDS + RETRY_AFTER,
        what=f"{BUSY} triggered after its 429",
    )
    calls = [r for r in deployed.emulator.trigger_requests if r.portfolio_id == BUSY]

    assert [call.status for call in calls] == [429, 200]
    # The message came back no sooner than Glider asked (SQS's visibility, set by the function).
    assert calls[1].received_at - calls[0].received_at >= RETRY_AFTER - 1
    # The same message, delivered twice, triggered its other portfolio once.
    assert triggered(deployed, BUSY) == 1
    assert triggered(deployed, BUSY_MATE) == 1


def test_a_message_delivered_twice_triggers_once(deployed: Deployed, sent: Sent) -> None:
    wait_for(
        lambda: triggered(deployed, DUPLICATE),
        seconds=TRIGGER_SECONDS,
        what=f"{DUPLICATE} triggered",
    )
    # The producer sends the same message again (its first send's answer was lost, say).
    deployed.client("sqs").send_message(
        QueueUrl=deployed.outputs["WorkQueueUrl"], MessageBody=sent.duplicate_body
    )
    wait_for(
        lambda: work_queue_is_empty(deployed),
        seconds=TRIGGER_SECONDS,
        what="the work queue consumed",
    )

    assert triggered(deployed, DUPLICATE) == 1
    assert [row for row in letters(deployed) if row.portfolio == DUPLICATE] == []


def test_a_schedule_fires_and_its_portfolios_are_triggered_once(
    deployed: Deployed, sent: Sent
) -> None:
    wait_for(
        lambda: all(triggered(deployed, portfolio) for portfolio in SCHEDULED),
        seconds=SCHEDULE_SECONDS,
        what=f"the template's schedule ({deployed.parameters['ScheduleExpression']}) run",
    )

    assert [triggered(deployed, portfolio) for portfolio in SCHEDULED] == [1, 1]
    # Its run names the schedule's ARN and the time it was due, as Scheduler fills them in on AWS
    # (MiniStack needs local/aws/launcher.py for it): the guard keys the run by them, so each run
    # of each schedule is a delivery of its own. Each portfolio is triggered from the work queue,
    # from a message the schedule's invocation queued (queued_by) with the run's fields.
    due = deployed.parameters["ScheduleExpression"].removeprefix("at(").removesuffix(")") + "Z"
    runs = [
        line["source_metadata"]
        for line in function_log(deployed, "Rebalance triggered")
        if line.get("source") == "sqs" and line.get("queued_by") == "schedule"
    ]
    assert len(runs) == 2, runs
    for run in runs:
        assert run["scheduleArn"].startswith(f"arn:aws:scheduler:{deployed.aws.region}:")
        assert f":schedule/{deployed.outputs['ScheduleGroupName']}/" in run["scheduleArn"]
        assert run["scheduledTime"] == due


def function_log(deployed: Deployed, message: str) -> list[dict[str, Any]]:
    """The function's JSON log lines with this message, from its log group."""
    group = deployed.client("cloudformation").describe_stack_resource(
        StackName=deployed.stack, LogicalResourceId="TriggerFunctionLogGroup"
    )["StackResourceDetail"]["PhysicalResourceId"]
    logs = deployed.client("logs")
    lines = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        for event in page["events"]:
            try:
                line = json.loads(event["message"])
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("message") == message:
                lines.append(line)
    return lines


def test_a_follow_up_reports_the_outcome_as_an_event_on_the_outcome_bus(
    deployed: Deployed, sent: Sent
) -> None:
    sqs = deployed.client("sqs")
    seen: dict[str, dict[str, Any]] = {}

    def outcome_of_rule() -> dict[str, Any] | None:
        for message in sqs.receive_message(
            QueueUrl=deployed.outcome_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            event = json.loads(message["Body"])
            seen[event["detail"]["portfolioId"]] = event
        return seen.get(RULE)

    event = wait_for(outcome_of_rule, seconds=OUTCOME_SECONDS, what=f"the outcome event of {RULE}")

    [rebalance] = deployed.emulator.rebalances_for(RULE)
    assert event["detail-type"] == "Glider Rebalance Completed"
    assert event["source"] == "glider-rebalance-trigger"
    assert event["detail"]["rebalanceId"] == rebalance.rebalance_id
    assert event["detail"]["outcome"] == "completed"


def test_a_dlq_redrive_triggers_once(
    deployed: Deployed, sent: Sent, local_stack_file: None, capsys: pytest.CaptureFixture[str]
) -> None:
    [letter] = wait_for(
        lambda: [row for row in letters(deployed) if row.portfolio == REDRIVEN],
        seconds=TRIGGER_SECONDS,
        what=f"the letter for {REDRIVEN} (no schedule on Glider) in the DLQ",
    )
    assert letter.reason == "BAD_REQUEST"
    deployed.emulator.add_portfolio(REDRIVEN)  # now it has a schedule: the cause is fixed

    status = dlq.main(["redrive", "--stack", deployed.stack, "--reason", "BAD_REQUEST", "--yes"])

    assert status == 0, capsys.readouterr()
    assert "Moved 1," in capsys.readouterr().out
    wait_for(
        lambda: triggered(deployed, REDRIVEN),
        seconds=TRIGGER_SECONDS,
        what=f"{REDRIVEN} triggered from its redriven letter",
    )
    wait_for(
        lambda: work_queue_is_empty(deployed),
        seconds=TRIGGER_SECONDS,
        what="the redriven letter consumed",
    )
    assert triggered(deployed, REDRIVEN) == 1
    assert [row for row in letters(deployed) if row.portfolio == REDRIVEN] == []


def test_the_same_detail_type_from_another_source_or_bus_invokes_nothing(
    deployed: Deployed, sent: Sent
) -> None:
    # Last in the module: by now the events were put long ago (the follow-up alone takes 30 s),
    # and the event with the configured source, put with them, was delivered within seconds.
    assert time.monotonic() - sent.started > 30
    assert triggered(deployed, RULE) == 1
    called = {request.portfolio_id for request in deployed.emulator.requests}
    assert WRONG_SOURCE not in called
    assert OTHER_BUS not in called
