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
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import Deployment


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
    bodies: list[dict[str, Any]] = []
    while batch := deployment.sqs.receive_message(
        QueueUrl=deployment.work_queue.url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        bodies.extend(json.loads(m["Body"]) for m in batch)
    return bodies


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
    # Each carries the delivery's key: a second delivery of the message is the same work.
    assert {body["idempotencyKey"] for body in bodies} == {"sqs:big-1"}


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
