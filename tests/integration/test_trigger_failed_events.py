"""A trigger the function dead-letters is announced on the outcome bus (the event a notice is made
of), through the real handler, the moto server (the DLQ, an EventBridge bus whose rule delivers
the function's events to a queue) and the emulator: one event per letter, naming the portfolio,
and a bus that refuses it fails nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from local.fixtures.delivery import Story
from local.fixtures.event_source import PollResult, SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, attribute_values, drain

pytestmark = pytest.mark.both_api_versions

GONE = "port_gone"  # unknown to the emulator: Glider answers 404


def received_from_work_queue(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """The SQS event the work queue's event source would deliver for one message."""
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=json.dumps(body))
    messages = drain(deployment.sqs, deployment.work_queue.url, wait_seconds=1)
    return sqs_event(messages, deployment.work_queue.arn, REGION)


def split_and_drained(
    function: LocalFunction, deployment: Deployment, event: dict[str, Any]
) -> list[PollResult]:
    """A work-queue batch whose message names several portfolios: it is split into one message
    per portfolio, which the event source then hands to the function until none is visible."""
    response = function.invoke(event)
    assert response == {"batchItemFailures": []}  # the split settled it
    drained = SqsEventSource(deployment.sqs, deployment.work_queue).drain(
        function.invoke, idle_seconds=0
    )
    assert [b.response for b in drained] == [{"batchItemFailures": []}] * len(drained)
    return drained


def bus_events(deployment: Deployment) -> list[dict[str, Any]]:
    assert deployment.outcome_events is not None
    received = drain(deployment.sqs, deployment.outcome_events.url, wait_seconds=1)
    return [json.loads(message["Body"]) for message in received]


def test_a_404_portfolios_letter_comes_with_one_event_naming_it_and_why(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    event = received_from_work_queue(deployment, {"portfolioIds": [GONE, "port_abc123"]})

    split_and_drained(function, deployment, event)

    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"])["portfolioId"] == GONE
    letter_attributes = attribute_values(letter)
    # The triggered portfolio's outcome (if followed) is not this event: only the letter's.
    failed = [e for e in bus_events(deployment) if e["detail-type"].endswith("Trigger Failed")]
    [announced] = failed
    assert announced["detail-type"] == "Glider Rebalance Trigger Failed"
    assert announced["source"] == "glider-rebalance-trigger"
    detail = announced["detail"]
    assert detail["portfolioId"] == GONE
    assert detail["reason"] == letter_attributes["reason"] == "NOT_FOUND"
    assert detail["failureClass"] == "permanent"
    assert detail["gliderAnswer"].startswith("HTTP 404")
    assert detail["httpStatus"] == 404
    assert detail["detail"] == letter_attributes["detail"]  # Glider's message, as kept
    assert detail["source"] == letter_attributes["source"]
    assert detail["failedAt"] == letter_attributes["failedAt"]
    assert detail["deliveryKey"]


def test_more_letters_than_one_put_events_call_takes_are_each_announced(
    deliver: Callable[..., Story], deployment: Deployment
) -> None:
    # Twelve ids the input rejects: dead-lettered at once, in the event's own invocation, twelve
    # letters in one write (PutEvents takes 10 entries a call).
    rejected = sorted(f"port.gone{n:02d}" for n in range(12))

    story = deliver({"portfolioIds": rejected})

    assert (story.answer["queued"], story.answer["deadLettered"]) == (0, 12)
    assert story.batches == []  # nothing was queued: all twelve in the one invocation
    assert len(deployment.dlq_messages()) == 12
    assert sorted(e["detail"]["portfolioId"] for e in bus_events(deployment)) == rejected


def test_a_letter_written_once_per_delivery_is_announced_once(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # A 2xx that is not a success: Glider may have acted, so the delivery is never sent again
    # and its letter is written once, however often SQS delivers it.
    emulator.script("port_abc123", Fault.malformed(status=200, body=b"ok"))
    event = received_from_work_queue(deployment, {"portfolioId": "port_abc123"})

    function.invoke(event)
    function.invoke(event)  # SQS delivers it again

    assert len(emulator.trigger_requests) == 1
    assert len(deployment.dlq_messages()) == 1
    [announced] = bus_events(deployment)
    assert announced["detail"]["portfolioId"] == "port_abc123"
    assert announced["detail"]["reason"] == "UNEXPECTED_RESPONSE"


def test_a_bus_that_refuses_the_event_fails_nothing_and_is_counted(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(OUTCOME_EVENT_BUS_NAME="no-such-bus")
    event = received_from_work_queue(deployment, {"portfolioIds": [GONE, "port_abc123"]})

    split_and_drained(function, deployment, event)  # settled: not delivered again

    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"])["portfolioId"] == GONE
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_abc123"]  # once, not again
    counted = [m["OutcomeEventsNotPut"] for m in function.metrics if "OutcomeEventsNotPut" in m]
    assert counted == [[1.0]]
    [logged] = [log for log in function.logs if "failed triggers' events" in log["message"]]
    assert logged["portfolio_ids"] == [GONE]
