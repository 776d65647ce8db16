"""What a delivery's earlier attempts may have started is recorded when they happen, and a later
receive, retry or replay looks up exactly those: never a window guessed from receive counts or
invocation lifetimes. Against the real handler, the moto server and the Glider emulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from local.fixtures.event_source import SqsEventSource
from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.lambda_context import EnvironmentCrash, LocalLambdaContext
from local.fixtures.stack import Deployment

PORTFOLIO = "port_abc123"
pytestmark = pytest.mark.both_api_versions


def sqs_record(body: dict[str, Any], *, message_id: str, receive_count: int, first_ms: int) -> Any:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "ApproximateFirstReceiveTimestamp": str(first_ms),
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1",
            }
        ]
    }


def test_a_refused_request_is_sent_again_not_absorbed_by_another_deliverys_rebalance(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    # Delivery A (an upstream request) triggers the portfolio; Glider's cooldown then refuses
    # delivery B's only attempt with a 429 whose Retry-After is longer than an invocation waits.
    emulator.set_cooldown(3)
    first_ms = int(time.time() * 1000)
    a = sqs_record(
        {"portfolioId": PORTFOLIO, "idempotencyKey": "upstream-a"},
        message_id="a",
        receive_count=1,
        first_ms=first_ms,
    )
    b = {"portfolioId": PORTFOLIO, "idempotencyKey": "upstream-b"}
    assert function.invoke(a) == {"batchItemFailures": []}
    refused = function.invoke(sqs_record(b, message_id="b", receive_count=1, first_ms=first_ms))
    assert refused == {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert len(emulator.rebalances) == 1

    time.sleep(3.2)  # the cooldown is over when SQS delivers B again
    again = function.invoke(sqs_record(b, message_id="b", receive_count=2, first_ms=first_ms))

    assert again == {"batchItemFailures": []}
    assert len(emulator.rebalances_for(PORTFOLIO)) == 2  # B was sent, not taken for A's
    [line] = [
        log
        for log in function.logs
        if log.get("outcome") == "triggered" and log.get("delivery_id") == "b"
    ]
    assert "reconciled" not in line


def test_a_guard_write_that_fails_after_a_lost_answer_keeps_its_window_for_the_next_receive(
    deployment: Deployment,
    proxy: FaultProxy,
    start_behind_proxy: Callable[..., LocalFunction],
    emulator: GliderEmulator,
) -> None:
    function = start_behind_proxy(GLIDER_MAX_ATTEMPTS="1")
    emulator.script(PORTFOLIO, Fault.lost_response())
    assert function.invoke({"portfolioId": PORTFOLIO})["queued"] == 1
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    # Every write of the guard's after the attempt left fails: the record of what it may have
    # started cannot be kept there (the claim, and the write before sending, go through).
    proxy.inject("DynamoDB_20120810.DeleteItem", AwsFault.access_denied())
    proxy.inject("DynamoDB_20120810.UpdateItem", AwsFault.access_denied(), after=2)
    # A short invocation (its window is the guard's hold), its clock started when it is invoked.
    first = source.poll(lambda batch: function.invoke(batch, timeout_seconds=4))
    assert first is not None
    assert first.redelivered  # its only attempt lost: kept for retry
    assert len(emulator.trigger_requests) == 1
    assert [log for log in function.logs if log["message"].startswith("Outcome not recorded")]

    proxy.clear()
    time.sleep(4.1)  # after the interrupted holder's window
    last = source.poll(function.invoke, wait_seconds=5)  # its last receive (maxReceiveCount 2)

    assert last is not None
    assert last.deleted
    assert len(emulator.trigger_requests) == 1  # looked up, found, not sent again
    assert len(emulator.rebalances_for(PORTFOLIO)) == 1
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["reconciled"] is True
    assert deployment.dlq_messages() == []


def test_a_guard_write_that_fails_after_a_lost_answer_on_the_last_receive_keeps_it_for_the_replay(
    deployment: Deployment,
    proxy: FaultProxy,
    start_behind_proxy: Callable[..., LocalFunction],
    emulator: GliderEmulator,
) -> None:
    function = start_behind_proxy(GLIDER_MAX_ATTEMPTS="1")
    # Its first receive refused (nothing started), its last one's only attempt lost.
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=0), Fault.lost_response())
    function.invoke({"portfolioId": PORTFOLIO})
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    first = source.poll(function.invoke)
    assert first is not None
    assert first.redelivered
    # On the last receive every write of the guard's after the attempt left fails.
    proxy.inject("DynamoDB_20120810.DeleteItem", AwsFault.access_denied())
    proxy.inject("DynamoDB_20120810.UpdateItem", AwsFault.access_denied(), after=2)
    last = source.poll(  # a 3 s invocation, from the receive
        lambda batch: function.invoke(batch, timeout_seconds=3), wait_seconds=5
    )
    assert last is not None
    assert last.deleted  # lettered by the function on its last receive
    [letter] = deployment.dlq_messages()
    body = json.loads(letter["Body"])
    assert set(body["mayHaveStarted"]) == {"after", "before"}

    proxy.clear()
    time.sleep(3.1)  # after the interrupted holder's window
    sent = len(emulator.trigger_requests)
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=letter["Body"])
    source.drain(function.invoke, idle_seconds=0)  # the operator replays it

    assert len(emulator.trigger_requests) == sent  # looked up, found, not sent again
    assert len(emulator.rebalances_for(PORTFOLIO)) == 1
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["reconciled"] is True


def test_a_holder_that_dies_with_its_request_in_flight_leaves_that_window_to_look_at(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    start_function().invoke({"portfolioId": PORTFOLIO})  # queued
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    # The seventh look at the clock comes after the first POST, before a retry: it dies there.
    crashing = LocalLambdaContext(timeout_seconds=4, crash_after_calls=7)
    dying = start_function(GLIDER_MAX_ATTEMPTS="2")
    with pytest.raises(EnvironmentCrash):
        source.poll(lambda batch: dying.invoke(batch, context=crashing))
    assert len(emulator.trigger_requests) == 1  # it died with its answer lost

    time.sleep(4.1)  # the message's redelivery, after the dead holder's deadline
    function = start_function()
    again = source.poll(function.invoke, wait_seconds=5)

    assert again is not None
    assert again.deleted
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line.get("reconciled") is True  # found where the dead holder had recorded it
    assert len(emulator.trigger_requests) == 1
    assert len(emulator.rebalances_for(PORTFOLIO)) == 1
