"""The paths a review found that lost or doubled a rebalance, each against the real handler, the
moto server and the Glider emulator (through the fault proxy where AWS must misbehave)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from glider_trigger.domain.errors import ConfigurationError
from local.fixtures.delivery import Story
from local.fixtures.event_source import SqsEventSource
from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.lambda_context import EnvironmentCrash, LocalLambdaContext
from local.fixtures.stack import Deployment, attribute_values, drain

DLQ_WRITE = "AmazonSQS.SendMessageBatch"
# On the work queue's path, the look at the clock that is the first attempt's deadline check:
# after the guard's claim, before the POST.
CRASH_AT = 4


def sqs_event(*bodies: str, receive_count: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def posts(emulator: GliderEmulator, portfolio_id: str) -> int:
    return sum(1 for r in emulator.trigger_requests if r.portfolio_id == portfolio_id)


def rebalanced(emulator: GliderEmulator) -> list[str]:
    return sorted(r.portfolio_id for r in emulator.rebalances)


def replay(
    deployment: Deployment, function: LocalFunction, taken: Sequence[dict[str, Any]] = ()
) -> int:
    """Move every DLQ message (and those `taken` from it before) to the work queue, body
    verbatim (what a move task does), and run the work queue through the function; returns how
    many were replayed."""
    letters = [*taken, *deployment.dlq_messages()]
    for letter in letters:
        deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=letter["Body"])
    SqsEventSource(deployment.sqs, deployment.work_queue).drain(function.invoke, idle_seconds=1)
    return len(letters)


# --------------------------------------------------------------------------- lost


def test_a_crash_then_the_last_receive_inside_the_window_defers_the_portfolio_not_drops_it(
    start_function, deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
) -> None:
    event = {"portfolioId": "port_abc123"}  # an async invocation: keyed by its request id
    context = LocalLambdaContext(timeout_seconds=30)
    queued = start_function().invoke(event, context=context)
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    # The environment that receives the message dies after the claim, before the POST (the
    # CRASH_AT-th look at the clock), its record left "in progress".
    crashing = LocalLambdaContext(timeout_seconds=3, crash_after_calls=CRASH_AT)
    dying = start_function()
    with pytest.raises(EnvironmentCrash):
        source.poll(lambda batch: dying.invoke(batch, context=crashing))
    assert emulator.trigger_requests == []
    [held] = deployment.moto.client("dynamodb").scan(TableName=deployment.idempotency_table)[
        "Items"
    ]
    assert held["status"]["S"] == "INPROGRESS"

    # The message's last receive (maxReceiveCount 2), in a new environment, inside the crashed
    # one's window: deferred, not dead-lettered (a replay would be a new delivery).
    function = start_function()
    last = source.poll(lambda batch: function.invoke(batch, timeout_seconds=3), wait_seconds=3)

    assert last is not None
    assert last.deleted  # the deferral carries it on
    [line] = [log for log in function.logs if log.get("portfolio_id") == "port_abc123"]
    assert (line["outcome"], line["action"]) == ("failed", "deferred: in progress elsewhere")
    assert deployment.dlq_messages() == []
    # The deferral becomes visible after the holder's longest window (the function's timeout),
    # carrying the delivery's key: the crashed holder's record has lapsed by then.
    assert source.poll(function.invoke) is None  # not visible yet
    deferred = source.poll(function.invoke, wait_seconds=15)  # a long poll: back when visible
    assert deferred is not None
    [body] = [json.loads(r["body"]) for r in deferred.event["Records"]]
    # No window guessed from the holder's lifetime: it died before sending, and its record says
    # so (one that died while sending leaves the window it recorded: test_recorded_attempts.py).
    assert body == {
        "portfolioId": "port_abc123",
        "skipScheduleValidation": False,
        "deliveryKey": f"lambda:{context.aws_request_id}",
        "queuedBy": "direct",  # the transport it came in by, a direct invocation
    }
    assert queued["deliveryKey"] == body["deliveryKey"]
    assert rebalanced(emulator) == ["port_abc123"]
    assert [r.method for r in emulator.requests] == ["POST"]  # nothing to look up first
    # Lambda's retry of the same event, later still: queued again, done, not triggered again.
    late = LocalLambdaContext(timeout_seconds=30, aws_request_id=context.aws_request_id)
    story = deliver(event, function=function, context=late)
    assert [o["outcome"] for o in story.outcomes] == ["already-triggered"]
    assert rebalanced(emulator) == ["port_abc123"]


def test_a_work_queue_is_required(start_function) -> None:
    # Every trigger runs from the work queue: without one the function does not start (it
    # used to trigger an event's portfolios inline, and fail a held one for Lambda to retry).
    with pytest.raises(ConfigurationError, match="WORK_QUEUE_URL"):
        start_function(WORK_QUEUE_URL="")


# --------------------------------------------------------------------------- doubled


def test_a_2xx_whose_body_is_cut_off_is_never_posted_again(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    # Unreconciled, its rebalance id stays unknown (test_reconcile.py: the lookup that finds it).
    function = start_function()
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))
    emulator.script("port_abc123", Fault.truncated())
    event = sqs_event(json.dumps({"portfolioId": "port_abc123"}))

    first = function.invoke(event)
    second = function.invoke(event)  # a redelivery of the same message

    assert first == second == {"batchItemFailures": []}
    assert posts(emulator, "port_abc123") == 1
    assert rebalanced(emulator) == ["port_abc123"]
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert (line["reason"], line.get("rebalance_id"), line["level"]) == (
        "REBALANCE_ID_UNKNOWN",
        None,
        "WARNING",
    )
    counted = [m for m in function.metrics if "TriggeredWithoutRebalanceId" in m]
    assert [m["TriggeredWithoutRebalanceId"] for m in counted] == [[1.0]]
    assert [log["outcome"] for log in function.logs if "outcome" in log] == [
        "triggered",
        "already-triggered",
    ]


def test_a_2xx_without_a_success_body_is_remembered_posted_once_and_dead_lettered_once(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script("port_abc123", Fault.malformed(200, b'{"success": false}', "application/json"))
    emulator.script("port_def456", *[Fault.error(503, "API_000", "down")] * 4)
    event = sqs_event(json.dumps({"portfolioIds": ["port_abc123", "port_def456"]}))
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    split = function.invoke(event)  # one message per portfolio, under this message's key
    first = source.drain(function.invoke, idle_seconds=2)  # port_def456 back after its failure
    again = function.invoke(event)  # the many-id message redelivered: split again
    second = source.drain(function.invoke, idle_seconds=0)

    assert split == again == {"batchItemFailures": []}
    assert [len(batch.redelivered) for batch in first] == [1, 0]
    assert [len(batch.deleted) for batch in second] == [2]
    assert posts(emulator, "port_abc123") == 1
    assert rebalanced(emulator) == ["port_def456"]
    letters = deployment.dlq_messages()
    assert [attribute_values(m)["reason"] for m in letters] == ["UNEXPECTED_RESPONSE"]
    [again_line] = [log for log in function.logs if log.get("outcome") == "already-failed"]
    assert again_line["action"] == "none: dead-lettered by an earlier delivery"
    # Its letter replayed: not sent again, and the letter stays in the DLQ (a replay is a new
    # message, so the guard writes it again) rather than vanishing with the replayed message.
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=letters[0]["Body"])
    source.drain(function.invoke, idle_seconds=1)
    assert posts(emulator, "port_abc123") == 1
    replayed = deployment.dlq_messages()
    assert [attribute_values(m)["reason"] for m in replayed] == ["UNEXPECTED_RESPONSE"]
    assert replayed[0]["Body"] == letters[0]["Body"]


def test_a_remembered_2xx_failure_whose_letter_was_not_written_gets_it_on_the_redelivery(
    start_behind_proxy,
    proxy: FaultProxy,
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_behind_proxy()
    emulator.script("port_abc123", Fault.malformed(200, b"<html>ok</html>", "text/html"))
    proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=3, within=deployment.dlq.url)
    context = LocalLambdaContext(timeout_seconds=30)
    event = {"portfolioId": "port_abc123"}

    story = deliver(event, function=function, context=context)
    assert len(story.batches[0].redelivered) == 1  # the letter not written: delivered again
    again = SqsEventSource(deployment.sqs, deployment.work_queue).drain(function.invoke)
    retry = LocalLambdaContext(timeout_seconds=30, aws_request_id=context.aws_request_id)
    late = deliver(event, function=function, context=retry)  # a retry of the same event

    assert [len(b.deleted) for b in [*story.batches, *again]] == [0] + [1] * (
        len(story.batches) + len(again) - 1
    )
    assert proxy.injected == {DLQ_WRITE: 3}
    assert [o["outcome"] for o in late.outcomes] == ["already-failed"]
    assert posts(emulator, "port_abc123") == 1
    assert [attribute_values(m)["reason"] for m in deployment.dlq_messages()] == [
        "UNEXPECTED_RESPONSE"
    ]


def test_stale_letters_trigger_nothing_twice_on_replay(
    start_function, deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(MAX_CONCURRENCY="4")
    ids = [f"port_many{n:02d}" for n in range(12)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    # port_gone: unknown, a genuine failure
    event = {"id": "ev-stale", "detail-type": "X", "detail": {"portfolioIds": [*ids, "port_gone"]}}
    emulator.set_outage(Fault.error(503, "API_000", "down"))
    deliver(event, function=function)
    time.sleep(1.2)  # the last receive: every portfolio dead-lettered
    SqsEventSource(deployment.sqs, deployment.work_queue).drain(function.invoke, idle_seconds=1)
    stale = deployment.dlq_messages()
    assert len(stale) == 13
    emulator.set_outage(None)

    story = deliver(event, function=function)  # the event delivered again: the same keys

    assert story.triggered == 12
    assert rebalanced(emulator) == sorted(ids)
    replayed = replay(deployment, function, stale)
    assert replayed == 14  # 13 stale letters, and port_gone's (still unknown)
    assert rebalanced(emulator) == sorted(ids)  # nothing triggered twice
    # A genuine failure still triggers on replay once its cause is fixed.
    emulator.add_portfolio("port_gone")
    replay(deployment, function)
    assert rebalanced(emulator) == sorted([*ids, "port_gone"])


def test_the_guard_must_remember_as_long_as_a_copy_can_arrive(start_function) -> None:
    with pytest.raises(ConfigurationError, match=r"TTL_SECONDS \(60\) must be at least"):
        start_function(IDEMPOTENCY_TTL_SECONDS="60")
    with pytest.raises(ConfigurationError, match="= 1900800"):  # 7 + 14 + 1 days
        start_function(WORK_QUEUE_RETENTION_SECONDS=str(7 * 86400))


def test_long_idempotency_keys_that_share_a_prefix_are_two_deliveries(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    prefix = "k" * 300
    first = deliver({"portfolioId": "port_abc123", "idempotencyKey": prefix + "-1"})
    second = deliver({"portfolioId": "port_abc123", "idempotencyKey": prefix + "-2"})
    again = deliver({"portfolioId": "port_abc123", "idempotencyKey": prefix + "-2"})

    assert [[o["outcome"] for o in story.outcomes] for story in (first, second, again)] == [
        ["triggered"],
        ["triggered"],
        ["already-triggered"],
    ]
    assert rebalanced(emulator) == ["port_abc123", "port_abc123"]


# --------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("retry_after", [10**11, 10**400], ids=["1e11", "400 digits"])
def test_an_absurd_retry_after_is_clamped_and_every_letter_written(
    function: LocalFunction,
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    retry_after: int,
) -> None:
    emulator.script("port_abc123", *[Fault.rate_limited(retry_after=retry_after)] * 2)

    story = deliver({"portfolioIds": ["port_abc123", "port_unknown"]})
    # port_abc123's message postponed (SQS's 12 h at most); on its last receive, lettered.
    [postponed] = [log for log in story.logs if log["message"].startswith("Message postponed")]
    assert 0 < postponed["visibility_timeout_seconds"] <= 43_200
    [body] = [
        r["body"]
        for batch in story.batches
        for r in batch.event["Records"]
        if json.loads(r["body"])["portfolioId"] == "port_abc123"
    ]
    last = sqs_event(body, receive_count=2)
    last["Records"][0]["eventSourceARN"] = deployment.work_queue.arn

    assert function.invoke(last) == {"batchItemFailures": []}
    letters = {
        json.loads(m["Body"])["portfolioId"]: attribute_values(m) for m in deployment.dlq_messages()
    }
    assert set(letters) == {"port_abc123", "port_unknown"}
    limited = letters["port_abc123"]
    waited = datetime.fromisoformat(limited["retryAt"]) - datetime.fromisoformat(
        limited["failedAt"]
    )
    assert timedelta(hours=23) < waited <= timedelta(days=1)


def test_a_postponement_counts_the_time_since_the_receive(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(GLIDER_READ_TIMEOUT_SECONDS="5")
    emulator.set_latency(1.2)  # some seconds of work before the postponement
    emulator.script("port_abc123", Fault.rate_limited(retry_after=43_200))
    deployment.sqs.send_message(
        QueueUrl=deployment.work_queue.url, MessageBody=json.dumps({"portfolioId": "port_abc123"})
    )

    result = SqsEventSource(deployment.sqs, deployment.work_queue).poll(function.invoke)

    assert result is not None
    assert result.redelivered
    postponed = [log for log in function.logs if log["message"].startswith("Message postponed")]
    [seconds] = [log["visibility_timeout_seconds"] for log in postponed]
    # 12 h less the poll slack (30 s) and the invocation's age (the 1.2 s latency, and more on
    # a loaded machine), and accepted by SQS.
    assert 43_200 - 30 - 60 < seconds <= 43_200 - 30 - 1
    assert not [log for log in function.logs if "Could not postpone" in log["message"]]


def test_control_characters_from_outside_reach_the_dlq_made_sqs_safe(
    start_behind_proxy,
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_behind_proxy()
    emulator.script("port_abc123", Fault.error(404, "API_200\x07", "not\x01found\ud800"))
    event = {
        "id": "ev\x1b[31m-1",
        "detail-type": "PortfolioRebalanceRequested",
        "detail": {"portfolioId": "port_abc123"},
    }

    story = deliver(event, function=function)

    assert story.dead_lettered == 1
    [letter] = drain(deployment.sqs, deployment.dlq.url)
    attributes = attribute_values(letter)
    assert attributes["detail"].startswith("not\ufffdfound\ufffd")
    assert attributes["source"] == "eventbridge:ev\ufffd[31m-1"
    assert attributes["apiErrorCode"] == "API_200\ufffd"
    # The body stays a replayable input that names the event's delivery.
    assert json.loads(letter["Body"])["deliveryKey"] == "event:ev\x1b[31m-1"


def test_on_its_last_receive_a_record_is_dead_lettered_by_the_function_and_replays_safely(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # The deployment's work queue redrives after 2 receives (maxReceiveCount 2).
    emulator.script("port_def456", *[Fault.error(503, "API_000", "down")] * 8)
    deployment.sqs.send_message(
        QueueUrl=deployment.work_queue.url,
        MessageBody=json.dumps({"portfolioIds": ["port_abc123", "port_def456"]}),
    )
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    results = source.drain(function.invoke, idle_seconds=2)

    # The message split into one per portfolio under its key; receive 1 of those: port_abc123
    # triggered, port_def456 kept for retry. Receive 2, the last: the function writes
    # port_def456's letter itself and the record is done, not redriven.
    [split, first, last] = results
    [original] = split.event["Records"]
    assert (split.deleted, len(first.event["Records"])) == ([original["messageId"]], 2)
    assert len(first.redelivered) == 1
    assert (last.redelivered, len(last.deleted)) == ([], 1)
    assert rebalanced(emulator) == ["port_abc123"]
    [letter] = deployment.dlq_messages()
    body = json.loads(letter["Body"])
    assert (body["portfolioId"], body["deliveryKey"]) == (
        "port_def456",
        f"sqs:{original['messageId']}",
    )
    assert attribute_values(letter)["reason"] == "SERVER_ERROR"
    # Replayed, it triggers the portfolio that failed, and not the one that had succeeded.
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=letter["Body"])
    source.drain(function.invoke, idle_seconds=1)
    assert rebalanced(emulator) == ["port_abc123", "port_def456"]
