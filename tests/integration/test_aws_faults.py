"""AWS-side faults, injected by a proxy between the function's boto3 clients and moto:
Secrets Manager throttled or denying access, the idempotency table refusing a write."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from glider_trigger.domain.errors import FanOutError
from local.fixtures.delivery import Story
from local.fixtures.event_source import SqsEventSource
from local.fixtures.event_source import sqs_event as lambdas_sqs_event
from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment

GET_SECRET = "secretsmanager.GetSecretValue"
STORE_SUCCESS = "DynamoDB_20120810.UpdateItem"


def sqs_event(body: str) -> dict[str, object]:
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "h",
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }


def in_one_batch(deployment: Deployment, function: LocalFunction, count: int) -> Any:
    """`count` work-queue messages handed to the function in one SQS event, as an event source
    mapping with a batching window does (each receive call gives at most 10), then deleted but
    for the failures it reports."""
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        received = deployment.sqs.receive_message(
            QueueUrl=deployment.work_queue.url,
            MaxNumberOfMessages=min(10, count - len(messages)),
            AttributeNames=["All"],
            VisibilityTimeout=60,  # none comes back while the batch is put together
            WaitTimeSeconds=1,
        ).get("Messages", [])
        assert received, f"only {len(messages)} of {count} messages on the work queue"
        messages.extend(dict(m) for m in received)
    response = function.invoke(lambdas_sqs_event(messages, deployment.work_queue.arn, "us-east-1"))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] not in failed:
            deployment.sqs.delete_message(
                QueueUrl=deployment.work_queue.url, ReceiptHandle=message["ReceiptHandle"]
            )
    return response


def test_a_throttled_secrets_manager_is_retried_and_the_trigger_goes_through(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    proxy: FaultProxy,
    emulator: GliderEmulator,
) -> None:
    function = start_behind_proxy()
    # The SDK retries 3 times itself; 5 throttles exhaust one of the function's tries.
    proxy.inject(GET_SECRET, AwsFault.throttling(), times=5)

    result = deliver({"portfolioId": "port_abc123"}, function=function).of("port_abc123")

    assert result["outcome"] == "triggered"
    assert proxy.injected[GET_SECRET] == 5
    assert len(emulator.rebalances) == 1


def test_access_denied_on_the_secret_is_systemic_and_names_secret_and_permission(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    proxy: FaultProxy,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_behind_proxy()
    proxy.inject(GET_SECRET, AwsFault.access_denied())

    story = deliver({"portfolioIds": ["port_abc123", "port_def456"]}, function=function)

    results = [story.of("port_abc123"), story.of("port_def456")]
    assert {r["failure_class"] for r in results} == {"systemic"}
    named = [r for r in results if deployment.secret_id in r["detail"]]
    assert named
    assert all("secretsmanager:GetSecretValue" in r["detail"] for r in named)
    assert emulator.trigger_requests == []


def test_a_success_the_table_refused_once_is_recorded_again(
    start_behind_proxy, proxy: FaultProxy, emulator: GliderEmulator
) -> None:
    function = start_behind_proxy()
    # The guard's third write: after the claim and the record made before sending.
    proxy.inject(STORE_SUCCESS, AwsFault.access_denied(), times=1, after=2)
    event = sqs_event(json.dumps({"portfolioId": "port_abc123"}))

    first = function.invoke(event)
    second = function.invoke(event)  # a redelivery

    assert first == second == {"batchItemFailures": []}
    assert len(emulator.rebalances) == 1
    assert [log["outcome"] for log in function.logs if "outcome" in log] == [
        "triggered",
        "already-triggered",
    ]


def test_a_success_the_table_never_records_is_reported_loudly(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    proxy: FaultProxy,
    emulator: GliderEmulator,
) -> None:
    function = start_behind_proxy()
    proxy.inject(STORE_SUCCESS, AwsFault.access_denied(), after=2)

    story = deliver({"portfolioId": "port_abc123"}, function=function)

    # What happened is reported as it happened.
    assert story.of("port_abc123")["outcome"] == "triggered"
    [error] = [log for log in story.logs if log["level"] == "ERROR"]
    assert "not recorded in the idempotency table" in error["message"]
    assert error["portfolio_id"] == "port_abc123"


def test_an_attempt_whose_answer_was_lost_is_flagged_on_the_success_line(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
) -> None:
    # Unreconciled (tests/integration/test_reconcile.py shows the lookup that prevents this).
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))
    function = start_behind_proxy()
    emulator.script("port_abc123", Fault.lost_response())

    story = deliver({"portfolioId": "port_abc123"}, function=function)

    [line] = [log for log in story.outcomes if log["outcome"] == "triggered"]
    assert line["maybe_delivered_attempts"] == 1
    assert line["level"] == "WARNING"
    assert len(emulator.rebalances) == 2  # the repeat no client can prevent, now visible


def test_parallel_workers_on_a_cold_start_read_the_secret_once(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    proxy: FaultProxy,
    emulator: GliderEmulator,
) -> None:
    function = start_behind_proxy(MAX_CONCURRENCY="16")
    ids = [f"port_cold{n:02d}" for n in range(32)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    emulator.set_latency(0.02)

    # The first batch (10 messages) is the cold one: its workers all need the key at once.
    story = deliver({"portfolioIds": ids}, function=function)

    assert story.triggered == 32
    assert proxy.counts[GET_SECRET] == 1


def test_parallel_workers_keep_one_aws_connection_each_across_invocations(
    start_behind_proxy: Callable[..., LocalFunction],
    proxy: FaultProxy,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # The proxy keeps connections alive, as AWS endpoints do (moto's server closes each one).
    # botocore's default pool holds 10: workers 11 to 16 would open a new connection for every
    # DynamoDB call and throw it away after, a TLS handshake each in AWS.
    # Without following outcomes: its SQS sends (another client) open connections of their own,
    # and the point here is the DynamoDB pool (one connection per worker, beyond botocore's 10).
    # Batches of 32 messages, so that all 16 workers are busy at once; the messages are queued
    # by this process, not the function, so that only its DynamoDB and Secrets Manager calls
    # go through the proxy.
    function = start_behind_proxy(MAX_CONCURRENCY="16", FOLLOW_OUTCOMES="false")
    ids = [f"port_pool{n:02d}" for n in range(64)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
        deployment.sqs.send_message(
            QueueUrl=deployment.work_queue.url,
            MessageBody=json.dumps({"portfolioId": portfolio_id}),
        )
    emulator.set_latency(0.02)

    first = in_one_batch(deployment, function, 32)
    opened = proxy.connections_opened
    second = in_one_batch(deployment, function, 32)

    assert first == second == {"batchItemFailures": []}
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ids
    # Per portfolio: its claim, its record before sending, its settlement, its history entry.
    assert proxy.counts["DynamoDB_20120810.UpdateItem"] == 4 * 64
    assert opened <= 16 + 1  # one per worker (DynamoDB), one for Secrets Manager
    # The warm invocation reused them: at most one per worker in all (one more only if the
    # cold one never had all 16 workers in a call at once), never one per call.
    assert proxy.connections_opened <= 16 + 1


def test_an_event_whose_work_queue_write_fails_is_retried_by_lambda_and_triggers_nothing_twice(
    start_behind_proxy: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    proxy: FaultProxy,
    emulator: GliderEmulator,
    deployment: Deployment,
    lambda_context: Callable[..., Any],
) -> None:
    # 15 portfolios: two batches to the work queue; the first lands, every later one is denied.
    ids = [f"port_q{n:02d}" for n in range(15)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    function = start_behind_proxy()
    work_queue = deployment.work_queue.url.rsplit("/", 1)[-1] + '"'  # as a request body quotes it
    proxy.inject("AmazonSQS.SendMessageBatch", AwsFault.access_denied(), after=1, within=work_queue)
    event = {"portfolioIds": ids}
    context = lambda_context()

    # The invocation fails, so that Lambda keeps the event and invokes it again (the same
    # request id); what landed of its first copy stays queued.
    with pytest.raises(FanOutError):
        function.invoke(event, context=context)
    assert emulator.trigger_requests == []  # an event's invocation triggers nothing itself
    landed = int(
        deployment.sqs.get_queue_attributes(
            QueueUrl=deployment.work_queue.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    assert 0 < landed < len(ids)
    proxy.clear("AmazonSQS.SendMessageBatch")
    story = deliver(event, function=function, context=context)
    # A portfolio's two messages taken at once: one waits for the other's outcome (redelivered).
    SqsEventSource(deployment.sqs, deployment.work_queue).drain(function.invoke, idle_seconds=3)

    assert story.answer["queued"] == len(ids)
    # The first copy's portfolios and the retry's alike are one delivery: each triggered once,
    # the copies queued twice found done.
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ids
    outcomes = [line["outcome"] for line in function.logs if line.get("portfolio_id") in ids]
    done = [outcome for outcome in outcomes if outcome in ("triggered", "already-triggered")]
    assert (done.count("triggered"), done.count("already-triggered")) == (len(ids), landed)
    assert deployment.dlq_messages() == []
