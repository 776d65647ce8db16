"""A message with more ids than one invocation should hold is never worked inline: on any receive
it becomes one work-queue message per id, carrying its delivery's key, so no invocation works
past its deadline and nothing it leaves behind can trigger twice when replayed. Against the real
handler, the moto server and the Glider emulator."""

from __future__ import annotations

import json
import time
from typing import Any

from bench import moto_speedups
from local.fixtures.event_source import SqsEventSource
from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import Deployment, attribute_values, drain


def one_message(ids: list[str], *, receive_count: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "big-1",
                "receiptHandle": "handle-big-1",
                "body": json.dumps({"portfolioIds": ids}),
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1",
            }
        ]
    }


def queued(deployment: Deployment) -> list[dict[str, Any]]:
    """Every message on the work queue, each once (received and deleted)."""
    return [json.loads(m["Body"]) for m in drain(deployment.sqs, deployment.work_queue.url)]


def test_3000_ids_on_the_last_receive_end_before_the_deadline_and_cannot_double(
    start_function: Any, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # moto 5.2.5 enqueues in time that grows with the queue's depth (bench/moto_speedups.py):
    # without the benchmark's patches, 3,000 messages cost it half a minute. AWS does not.
    assert moto_speedups.apply()
    ids = [f"port_{n:05d}" for n in range(3000)]
    function: LocalFunction = start_function(RATE_LIMIT_PER_SECOND="2")
    context = LocalLambdaContext(timeout_seconds=20)
    started = time.monotonic()

    response = function.invoke(one_message(ids, receive_count=2), context=context)

    assert time.monotonic() - started < 20 - 0.5  # the deadline, less its safety margin
    assert response == {"batchItemFailures": []}  # settled: nothing left for the redrive
    assert emulator.trigger_requests == []  # nothing worked inline
    assert deployment.dlq_messages() == []
    bodies = queued(deployment)
    assert sorted(body["portfolioId"] for body in bodies) == ids
    # Each names the message's own delivery: the same records as if it were worked inline, so
    # a second delivery of the message, or its earlier receives, are the same work.
    assert {body["deliveryKey"] for body in bodies} == {"sqs:big-1"}


def test_a_large_message_delivered_twice_triggers_each_portfolio_once(
    start_function: Any, emulator: GliderEmulator, deployment: Deployment
) -> None:
    ids = [f"port_{n:03d}" for n in range(120)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    function: LocalFunction = start_function()

    assert function.invoke(one_message(ids, receive_count=1)) == {"batchItemFailures": []}
    assert function.invoke(one_message(ids, receive_count=2)) == {"batchItemFailures": []}
    SqsEventSource(deployment.sqs, deployment.work_queue).drain(function.invoke, idle_seconds=1)

    triggered = sorted(r.portfolio_id for r in emulator.rebalances)
    assert triggered == ids  # each once, though its message was fanned out twice
    assert deployment.dlq_messages() == []


def test_ids_one_receives_split_triggered_stay_done_when_the_message_comes_again(
    start_function: Any, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # The first receive's split: two of its ids triggered, one kept for a retry; then SQS
    # delivers the whole message again (its visibility ran out): split again, same keys.
    ids = ["port_abc123", "port_def456", "port_ghi789"]
    emulator.script("port_ghi789", Fault.error(503, "API_000", "down"))
    function: LocalFunction = start_function(GLIDER_MAX_ATTEMPTS="1", MAX_CONCURRENCY="1")
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    assert function.invoke(one_message(ids, receive_count=1)) == {"batchItemFailures": []}
    first = source.poll(function.invoke)
    assert first is not None
    assert (len(first.deleted), len(first.redelivered)) == (2, 1)

    assert function.invoke(one_message(ids, receive_count=2)) == {"batchItemFailures": []}
    source.drain(function.invoke, idle_seconds=3)

    assert sorted(r.portfolio_id for r in emulator.rebalances) == ids  # each once
    assert deployment.dlq_messages() == []


def test_a_fan_out_the_work_queue_refuses_on_the_last_receive_is_dead_lettered_under_its_key(
    start_behind_proxy: Any, proxy: FaultProxy, emulator: GliderEmulator, deployment: Deployment
) -> None:
    ids = [f"port_{n:03d}" for n in range(60)]
    function: LocalFunction = start_behind_proxy()
    # The work queue's URL as the request body quotes it (the DLQ's name extends it).
    work_queue = deployment.work_queue.url.rsplit("/", 1)[-1] + '"'
    proxy.inject("AmazonSQS.SendMessageBatch", AwsFault.access_denied(), within=work_queue)

    response = function.invoke(one_message(ids, receive_count=2))

    # Not left to the redrive (a replay of the whole body would be a new delivery): one letter
    # per id, each naming the message's delivery, so a replay triggers nothing twice.
    assert response == {"batchItemFailures": []}
    letters = deployment.dlq_messages()
    assert sorted(json.loads(letter["Body"])["portfolioId"] for letter in letters) == ids
    assert {json.loads(letter["Body"])["deliveryKey"] for letter in letters} == {"sqs:big-1"}
    assert {attribute_values(letter)["reason"] for letter in letters} == {"FAN_OUT_FAILED"}
    assert emulator.trigger_requests == []


def test_a_refused_fan_out_on_the_last_receive_still_dead_letters_the_ids_it_rejected(
    start_behind_proxy: Any, proxy: FaultProxy, emulator: GliderEmulator, deployment: Deployment
) -> None:
    ids = [f"port_{n:03d}" for n in range(60)]
    function: LocalFunction = start_behind_proxy()
    work_queue = deployment.work_queue.url.rsplit("/", 1)[-1] + '"'
    proxy.inject("AmazonSQS.SendMessageBatch", AwsFault.access_denied(), within=work_queue)

    response = function.invoke(one_message([*ids, "not a portfolio id!"], receive_count=2))

    # Bad input is never dropped: the id the function refused has its letter beside the others.
    assert response == {"batchItemFailures": []}
    named = [json.loads(letter["Body"])["portfolioId"] for letter in deployment.dlq_messages()]
    assert "not a portfolio id!" in named
    assert sorted(p for p in named if p != "not a portfolio id!") == ids
